"""The layout rule: a checkpoint never changes the model's structure.

A merged (shallow) checkpoint, as DeepTrainingHook(fuse_at_end) saves it,
through every load path of a real Runner, alone and under DDP with 2 gloo
processes: into a model built in that layout (``deep_training=False``) every
backbone parameter is in the optimizer and trained; into a deep model the
run refuses before its first iteration, with the argument that fixes it.
"""
import socket

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.hooks import Hook

from vanillanet_mm.models.checkpoint import CheckpointError
from vanillanet_mm.utils.errors import ConfigError

from dist_helpers import layout_rule_worker
from engine_helpers import TinyClassifier, make_runner

FIX = 'deep_training=False'
# with weight decay, so that a conv bias before a BN (no gradient) changes
# too: every parameter the optimizer holds moves
OPTIM = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))


@pytest.fixture(scope='module')
def merged(tmp_path_factory):
    """A detector-style checkpoint of a model merged at λ = 1."""
    torch.manual_seed(1)
    model = TinyClassifier()
    model.backbone.switch_to_shallow()
    path = tmp_path_factory.mktemp('ckpt') / 'merged.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    return str(path)


class IterCount(Hook):

    def __init__(self):
        self.records = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.records.append(runner.iter)


def _runner(work_dir, model, **kwargs):
    rec = IterCount()
    runner = make_runner(work_dir, [rec], dict(by_epoch=True, max_epochs=2),
                         model=model, optim_wrapper=OPTIM, **kwargs)
    return runner, rec


@pytest.mark.parametrize('path', ['init_cfg', 'load_from'])
def test_merged_checkpoint_into_a_deep_model_refuses_before_training(
        tmp_path, merged, path):
    if path == 'init_cfg':
        model = TinyClassifier(init_cfg=dict(type='Pretrained',
                                             checkpoint=merged))
        runner, rec = _runner(tmp_path, model)
    else:
        runner, rec = _runner(tmp_path, TinyClassifier(), load_from=merged)
    with pytest.raises(CheckpointError, match=f'shallow layout.*{FIX}'):
        runner.train()
    assert rec.records == [] and not list(tmp_path.glob('*.pth'))
    assert runner.model.backbone.layout == 'training'


@pytest.mark.parametrize('path', ['init_cfg', 'load_from'])
def test_merged_checkpoint_trains_in_its_layout(tmp_path, merged, path):
    sd = torch.load(merged)['state_dict']
    if path == 'init_cfg':
        model = TinyClassifier(deep_training=False, init_cfg=dict(
            type='Pretrained', checkpoint=merged))
        runner, rec = _runner(tmp_path, model)
    else:
        runner, rec = _runner(tmp_path, TinyClassifier(deep_training=False),
                              load_from=merged)
    runner.train()
    assert len(rec.records) == 8
    held = {p for g in runner.optim_wrapper.optimizer.param_groups
            for p in g['params']}
    for name, p in runner.model.backbone.named_parameters():
        assert p in held, name
        assert not torch.equal(p.detach(), sd[f'backbone.{name}']), name


def test_load_state_dict_refuses_another_layout(merged):
    sd = torch.load(merged)['state_dict']
    with pytest.raises(CheckpointError, match=FIX):
        TinyClassifier().load_state_dict(sd, strict=False)
    deep = TinyClassifier().state_dict()
    with pytest.raises(CheckpointError, match='deep_training=True'):
        TinyClassifier(deep_training=False).load_state_dict(deep)
    with pytest.raises(CheckpointError, match='deploy=False'):
        TinyClassifier(deploy=True).load_state_dict(deep)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.parametrize('deep_training', [False, True])
def test_two_gloo_processes(tmp_path, merged, deep_training):
    out = tmp_path / 'rank'
    mp.spawn(layout_rule_worker, args=(
        _free_port(), str(tmp_path / 'work'), merged, deep_training, OPTIM,
        str(out)), nprocs=2)
    ranks = [torch.load(f'{out}.{r}') for r in range(2)]
    if deep_training:  # both ranks refuse before the first iteration
        for r in ranks:
            assert r['iters'] == 0
            assert r['error'].startswith('CheckpointError') and FIX in (
                r['error'])
        return
    sd = torch.load(merged)['state_dict']
    assert ranks[0].keys() == ranks[1].keys()
    for name, (value, held) in ranks[0].items():
        assert held and ranks[1][name][1], name
        assert torch.equal(value, ranks[1][name][0]), name  # DDP in step
        assert not torch.equal(value, sd[f'backbone.{name}']), name


def test_hook_refuses_to_anneal_a_model_without_deep_pairs(tmp_path):
    runner = make_runner(tmp_path, [dict(type='DeepTrainingHook',
                                         decay_epochs=1)],
                         dict(by_epoch=True, max_epochs=2),
                         model=TinyClassifier(deep_training=False))
    with pytest.raises(ConfigError, match='no deep pairs.*start=1'):
        runner.train()
