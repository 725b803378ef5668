"""Exact resume of the demo Mask R-CNN mid-anneal, through tools/train.py."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vanillanet_mm.datasets import generate

from tool_helpers import DEMO_DET as DET
from tool_helpers import train_args

ROOT = Path(__file__).parents[2]


def train(work_dir, data, *extra):
    proc = subprocess.run(
        [sys.executable, *train_args(work_dir, data, *extra)],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = next(Path(work_dir).glob('*/vis_data/scalars.json')).read_text()
    return [r for r in map(json.loads, lines.splitlines()) if 'loss' in r]


@pytest.mark.slow
def test_resume_mid_anneal_is_bit_identical(tmp_path):
    data = tmp_path / 'demo'
    generate(str(data), num_train=8, num_val=2, size=128)
    full = train(tmp_path / 'full', data)          # 2 epochs x 4 iterations
    resumed = train(tmp_path / 'resumed', data, '--resume',
                    tmp_path / 'full/epoch_1.pth')
    assert [r['iter'] for r in full] == list(range(1, 9))
    assert [r['iter'] for r in resumed] == list(range(5, 9))
    # the checkpoint is mid-anneal: λ still rising when training resumes
    assert 0 < full[3]['act_learn'] < full[4]['act_learn'] < 1
    later = full[4:]
    assert [r['act_learn'] for r in resumed] == [r['act_learn'] for r in later]
    for key in [k for k in later[0] if k.startswith('loss')]:
        assert [r[key] for r in resumed] == [r[key] for r in later], key


def _train_fused(work_dir, data, epochs, *extra):
    args = train_args(work_dir, data, *extra, epochs=epochs, keep=epochs)
    proc = subprocess.run(
        [sys.executable, *args, 'custom_hooks.0.fuse_at_end=True'],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_fuse_at_end_resumes_and_tests_fused(tmp_path):
    """λ reaches 1 after 2 epochs: the pairs merge, training goes on in the
    shallow form; resuming epoch 3 (merged) ends where the full run ends;
    tools/test.py --deploy tests the merged checkpoint fused."""
    import torch
    data = tmp_path / 'demo'
    generate(str(data), num_train=8, num_val=2, size=128)
    log = _train_fused(tmp_path / 'full', data, 4)
    assert 'merged the deep pairs' in log
    _train_fused(tmp_path / 'resumed', data, 4, '--resume',
                 tmp_path / 'full/epoch_3.pth')
    final, resumed = (torch.load(tmp_path / d / 'epoch_4.pth',
                                 map_location='cpu', weights_only=False)
                      ['state_dict'] for d in ('full', 'resumed'))
    assert 'backbone.stem.1.running_var' in final  # the shallow layout
    for k, v in final.items():
        assert torch.allclose(resumed[k].float(), v.float(), rtol=1e-5,
                              atol=1e-6), k
    from tool_helpers import data_options, tool
    metrics = []
    for extra in ((), ('--deploy', )):
        wd = tmp_path / f'test{len(extra)}'
        proc = tool('test.py', DET, tmp_path / 'full/epoch_4.pth',
                    '--work-dir', wd, *extra, '--cfg-options',
                    *data_options(data, True))
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics.append(json.loads((wd / 'test_metrics.json').read_text()))
    assert metrics[1]['coco/bbox_mAP'] == pytest.approx(
        metrics[0]['coco/bbox_mAP'], abs=1e-3)
