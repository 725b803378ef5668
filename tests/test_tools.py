"""tools/train.py and tools/test.py as subprocesses on demo data."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vanillanet_mm.datasets import generate

ROOT = Path(__file__).parents[1]
DET = str(ROOT / 'configs/mask_rcnn/vanillanet_demo.py')
SEG = str(ROOT / 'configs/upernet/vanillanet_demo.py')


def tool(name, *args):
    return subprocess.run([sys.executable, str(ROOT / 'tools' / name),
                           *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    generate(str(root), num_train=8, num_val=4, size=128)
    return root


def _data_opts(root, det):
    opts = [f'{l}.dataset.data_root={root}/' for l in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')]
    if det:
        ann = f'{root}/annotations/instances_validation.json'
        opts += [f'val_evaluator.ann_file={ann}',
                 f'test_evaluator.ann_file={ann}']
    return opts


@pytest.mark.slow
@pytest.mark.parametrize('det', [True, False], ids=['mask_rcnn', 'upernet'])
def test_train_then_test_and_deploy(tmp_path, data, det):
    cfg = DET if det else SEG
    loop = (['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
             'custom_hooks.0.decay_epochs=0.5'] if det else
            ['train_cfg.max_iters=4', 'train_cfg.val_interval=4',
             'custom_hooks.0.decay_iters=2',
             'default_hooks.checkpoint.interval=4'])
    loop.append('default_hooks.logger.interval=1')
    wd = tmp_path / 'train'
    proc = tool('train.py', cfg, '--work-dir', wd, '--cfg-options',
                *_data_opts(data, det), *loop)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = (wd / 'last_checkpoint').read_text().strip()
    assert Path(ckpt).exists()
    log = next(wd.glob('*/*.log')).read_text()
    assert 'act_learn: 1.0000' in log  # λ annealed to 1 within the run
    metrics = {}
    for mode in ('plain', 'deploy'):
        out = tmp_path / mode
        extra = ['--deploy'] if mode == 'deploy' else []
        proc = tool('test.py', cfg, ckpt, '--work-dir', out, *extra,
                    '--cfg-options', *_data_opts(data, det))
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics[mode] = json.loads((out / 'test_metrics.json').read_text())
    assert 'SwitchToDeployHook: fused backbone' in proc.stdout + proc.stderr
    key = 'coco/bbox_mAP' if det else 'mIoU'
    assert key in metrics['plain']
    for k, v in metrics['plain'].items():
        assert abs(v - metrics['deploy'][k]) <= 1e-3 * max(1, abs(v)), k


@pytest.mark.parametrize('det', [True, False], ids=['mask_rcnn', 'upernet'])
def test_missing_dataset_is_one_clear_error(tmp_path, det):
    proc = tool('train.py', DET if det else SEG, '--work-dir', tmp_path,
                '--cfg-options', *_data_opts(tmp_path / 'nowhere', det))
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr
    assert 'dataset root' in proc.stderr and 'nowhere' in proc.stderr
    assert 'make demo' in proc.stderr


def test_annotation_file_not_json(tmp_path, data):
    import shutil
    root = tmp_path / 'copy'
    shutil.copytree(data, root)
    (root / 'annotations/instances_training.json').write_text('garbage')
    proc = tool('train.py', DET, '--work-dir', tmp_path / 'wd',
                '--cfg-options', *_data_opts(root, True))
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert 'is not JSON' in proc.stderr
