"""Distributed training on CPUs: gloo, 2 processes, SyncBN (slow)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from vanillanet_mm.datasets import generate
from vanillanet_mm.utils.compat import mmengine_checkpoint_objects

from dist_helpers import sync_bn_worker

ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_sync_bn_on_cpu_equals_bn_on_the_whole_batch(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, 7, 3, generator=g) * 3 + 1
    grad_out = torch.randn(6, 5, 7, 3, generator=g)
    mp.spawn(sync_bn_worker, args=(_free_port(), x, grad_out,
                                    str(tmp_path / 'r')), nprocs=2)
    ranks = [torch.load(tmp_path / f'r.{r}') for r in range(2)]
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(5, momentum=0.3)
    nn.init.uniform_(ref.weight, 0.5, 1.5)
    nn.init.uniform_(ref.bias, -0.5, 0.5)
    xr = x.clone().requires_grad_()
    y = ref(xr)
    y.backward(grad_out)
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([r['y'] for r in ranks]), y, **close)
    torch.testing.assert_close(torch.cat([r['gx'] for r in ranks]), xr.grad,
                               **close)
    # each rank holds its share of the parameter gradients; DDP sums them
    torch.testing.assert_close(ranks[0]['gw'] + ranks[1]['gw'],
                               ref.weight.grad, **close)
    torch.testing.assert_close(ranks[0]['gb'] + ranks[1]['gb'],
                               ref.bias.grad, **close)
    for r in ranks:  # same running statistics on both ranks, as one BN
        torch.testing.assert_close(r['mean'], ref.running_mean, **close)
        torch.testing.assert_close(r['var'], ref.running_var, **close)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    generate(str(root), num_train=16, num_val=2, size=128)
    return root


SYNC_BN = "dict(type='SyncBN', requires_grad=True)"
CASES = {
    'mask_rcnn': (
        'configs/mask_rcnn/vanillanet_demo.py', 'epoch_1.pth',
        "model = dict(backbone=dict(norm_cfg=dict(type='SyncBN', eps=1e-6, "
        "requires_grad=True)))\n"
        "train_dataloader = dict(batch_size=2)\n"
        "train_cfg = dict(max_epochs=1, val_interval=2)\n"
        "default_hooks = dict(logger=dict(interval=1), "
        "checkpoint=dict(interval=1))\n"
        "custom_hooks = [dict(type='DeepTrainingHook', decay_epochs=0.75),"),
    'upernet': (
        'configs/upernet/vanillanet_demo.py', 'iter_4.pth',
        f"norm_cfg = {SYNC_BN}\n"
        "model = dict(backbone=dict(norm_cfg=dict(type='SyncBN', eps=1e-6, "
        "requires_grad=True)), decode_head=dict(norm_cfg=norm_cfg), "
        "auxiliary_head=dict(norm_cfg=norm_cfg))\n"
        "train_dataloader = dict(batch_size=2)\n"
        "train_cfg = dict(max_iters=4, val_interval=8)\n"
        "default_hooks = dict(logger=dict(interval=1), "
        "checkpoint=dict(interval=4))\n"
        "custom_hooks = [dict(type='DeepTrainingHook', decay_iters=3),"),
}


@pytest.mark.slow
@pytest.mark.parametrize('task', sorted(CASES))
def test_dist_train_two_cpu_processes(tmp_path, data, task):
    base, ckpt_name, overrides = CASES[task]
    work_dir = tmp_path / 'work'
    cfg = tmp_path / f'{task}_dist.py'
    cfg.write_text(
        f"_base_ = '{ROOT / base}'\n"
        "custom_imports = dict(imports=['vanillanet_mm', 'dist_helpers'], "
        "allow_failed_imports=False)\n"
        f"data_root = '{data}/'\n"
        f"{overrides}\n"
        "    dict(type='RNGStateHook'),\n"
        f"    dict(type='RankProbeHook', out_dir='{tmp_path}')]\n")
    opts = [f'{loader}.dataset.data_root={data}/' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')]
    if task == 'mask_rcnn':
        opts.append(f'val_evaluator.ann_file={data}/annotations/'
                    'instances_validation.json')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()),
               PYTHONPATH=os.pathsep.join([str(ROOT / 'tests/helpers'),
                                           os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run(
        ['bash', str(ROOT / 'tools/dist_train.sh'), str(cfg), '2',
         '--work-dir', str(work_dir), '--cfg-options', *opts],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = [json.loads((tmp_path / f'rank{r}.json').read_text())
             for r in range(2)]
    assert [r['world_size'] for r in ranks] == [2, 2]
    # both ranks see the same λ at every iteration, annealed to 1
    assert len(ranks[0]['act_learn']) == 4
    assert ranks[0]['act_learn'] == ranks[1]['act_learn']
    assert ranks[0]['act_learn'][0] < 1 and ranks[0]['act_learn'][-1] == 1
    # SyncBN ran (not reverted): identical BN statistics on different data
    assert ranks[0]['norm_types'] == [
        'vanillanet_mm.engine.dist.GlooSyncBatchNorm']
    for key in ('running_mean', 'running_var'):
        for a, b in zip(ranks[0][key], ranks[1][key]):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    # one checkpoint, one log (rank 0's)
    assert sorted(p.name for p in work_dir.glob('*.pth')) == [ckpt_name]
    # RNGStateHook gathered both ranks' generator states into it
    with mmengine_checkpoint_objects():  # as --resume loads it
        ckpt = torch.load(work_dir / ckpt_name)
    assert len(ckpt['rng_states']) == 2
    logs = list(work_dir.glob('*/*.log'))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert 'Distributed training: True' in log and 'act_learn: 1.0000' in log
