"""User errors become one line; anything else (a bug) keeps its traceback."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vanillanet_mm.models.checkpoint import CheckpointError
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.errors import (
    ConfigError,
    FusionError,
    InputFileError,
    OutputExistsError,
)

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize('error', [ConfigError, InputFileError,
                                   OutputExistsError, FusionError,
                                   CheckpointError])
def test_user_error_is_one_line(capsys, error):
    def main():
        raise error('bad input: do this instead')
    with pytest.raises(SystemExit) as e:
        run_cli(main, 'tool')
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err == 'tool: error: bad input: do this instead\n'


@pytest.mark.parametrize('error', [ValueError, RuntimeError,
                                   FileNotFoundError, KeyError])
def test_other_errors_propagate(error):
    def main():
        raise error('a bug somewhere')
    with pytest.raises(error, match='a bug somewhere'):
        run_cli(main, 'tool')


def test_bug_inside_a_library_keeps_its_traceback(tmp_path):
    """torch refuses a negative width while the detector is built: a
    RuntimeError from inside torch, not a user error of ours."""
    cfg = tmp_path / 'broken.py'
    cfg.write_text(f"_base_ = '{ROOT}/configs/mask_rcnn/vanillanet_demo.py'\n"
                   "model = dict(neck=dict(out_channels=-1))\n")
    torch.save(dict(state_dict={}), tmp_path / 'a.pth')  # read first
    proc = subprocess.run(
        [sys.executable,
         str(ROOT / 'tools/model_converters/convert_checkpoint.py'),
         'to-deploy', str(cfg), str(tmp_path / 'a.pth'),
         str(tmp_path / 'b.pth')], capture_output=True, text=True,
        timeout=300, cwd=ROOT)
    assert proc.returncode != 0
    assert 'Traceback' in proc.stderr
    assert 'RuntimeError' in proc.stderr
    assert 'convert_checkpoint: error:' not in proc.stderr


@pytest.mark.skipif(__import__('torch').cuda.is_available(),
                    reason='AMP is available on a GPU')
def test_amp_on_cpu_is_a_user_error(tmp_path):
    """mmengine's AmpOptimWrapper asserts a GPU: say so in one line."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools/train.py'),
         str(ROOT / 'configs/mask_rcnn/vanillanet_demo.py'), '--amp',
         '--work-dir', str(tmp_path / 'wd')], capture_output=True,
        text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert 'train: error: --amp needs a GPU' in proc.stderr
    assert not (tmp_path / 'wd').exists()
