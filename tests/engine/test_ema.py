"""mmengine's EMAHook next to DeepTrainingHook and SwitchToDeployHook: train,
test, test --deploy and resume the demo Mask R-CNN and UperNet."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vanillanet_mm.datasets import generate

ROOT = Path(__file__).parents[2]
CONFIGS = dict(mask_rcnn=ROOT / 'configs/mask_rcnn/vanillanet_demo.py',
               upernet=ROOT / 'configs/upernet/vanillanet_demo.py')
# mmdet's own EMA recipe (YOLOX/RTMDet): ExpMomentumEMA over parameters and
# buffers, priority 49 (right after the NORMAL hooks); mmengine's
# ExponentialMovingAverage for mmseg, which has no EMA class of its own.
EMA_TYPES = dict(mask_rcnn='ExpMomentumEMA',
                 upernet='ExponentialMovingAverage')
EMA_CONFIG = """
_base_ = '{base}'
custom_hooks = [*_base_.custom_hooks,
                dict(type='EMAHook', ema_type='{ema_type}',
                     momentum=0.01, update_buffers=True, priority=49)]
"""


def tool(name, *args):
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / name),
                           *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _options(data, det):
    opts = [f'{loader}.dataset.data_root={data}/' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')]
    if det:
        ann = f'{data}/annotations/instances_validation.json'
        return opts + [f'val_evaluator.ann_file={ann}',
                       f'test_evaluator.ann_file={ann}',
                       'train_dataloader.batch_size=2',
                       'train_cfg.max_epochs=2', 'train_cfg.val_interval=3',
                       'custom_hooks.0.decay_epochs=1',
                       'default_hooks.checkpoint.interval=1']
    return opts + ['train_cfg.max_iters=6', 'train_cfg.val_interval=100',
                   'custom_hooks.0.decay_iters=3',
                   'default_hooks.checkpoint.interval=3']


@pytest.mark.slow
@pytest.mark.parametrize('name', list(CONFIGS))
def test_ema_train_test_deploy_resume(tmp_path, name):
    det = name == 'mask_rcnn'
    data = tmp_path / 'demo'
    generate(str(data), num_train=8, num_val=3, size=128)
    cfg = tmp_path / f'{name}_ema.py'
    cfg.write_text(EMA_CONFIG.format(base=CONFIGS[name],
                                     ema_type=EMA_TYPES[name]))
    opts = ['--cfg-options', *_options(data, det), 'randomness.seed=0',
            'randomness.deterministic=True',
            'default_hooks.checkpoint.max_keep_ckpts=3']
    last = 'epoch_2.pth' if det else 'iter_6.pth'
    mid = 'epoch_1.pth' if det else 'iter_3.pth'

    tool('train.py', cfg, '--work-dir', tmp_path / 'full', *opts)
    ckpt = torch.load(tmp_path / 'full' / last, map_location='cpu',
                      weights_only=False)
    assert ckpt['state_dict']['backbone._act_learn'] == 1.0
    assert 'ema_state_dict' in ckpt
    metrics = {}
    for mode in ('plain', 'deploy'):
        log = tool('test.py', cfg, tmp_path / 'full' / last, '--work-dir',
                   tmp_path / mode, *(['--deploy'] if mode == 'deploy' else
                                      []), *opts)
        metrics[mode] = json.loads(
            (tmp_path / mode / 'test_metrics.json').read_text())
    # the EMA copy was fused too, and its fused weights were tested
    assert 'fused backbone of EMA model' in log
    assert 'fused backbone of model' in log
    key = 'coco/bbox_mAP' if det else 'mIoU'
    assert key in metrics['plain']
    for k, v in metrics['plain'].items():
        assert abs(v - metrics['deploy'][k]) <= 1e-3 * max(1, abs(v)), k

    # resume from the middle: the same weights, EMA weights included
    tool('train.py', cfg, '--work-dir', tmp_path / 'resumed', '--resume',
         tmp_path / 'full' / mid, *opts)
    resumed = torch.load(tmp_path / 'resumed' / last, map_location='cpu',
                         weights_only=False)
    for entry in ('state_dict', 'ema_state_dict'):
        assert ckpt[entry].keys() == resumed[entry].keys()
        for k, v in ckpt[entry].items():
            assert torch.equal(v, resumed[entry][k]), (entry, k)
