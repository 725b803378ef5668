"""Deep training that merges each deep pair at λ = 1 and trains on shallow:
VanillaNet.switch_to_shallow and DeepTrainingHook(fuse_at_end) in a real
MMEngine Runner (optimizer rebuild, schedule, EMA, resume)."""
import copy

import pytest
import torch
from mmengine.hooks import EMAHook, Hook
from torch import nn

from vanillanet_mm import DeepTrainingHook
from vanillanet_mm.engine.switch_to_deploy_hook import SwitchToDeployHook
from vanillanet_mm.engine.utils import unwrap
from vanillanet_mm.models import VanillaNet
from vanillanet_mm.utils.errors import ConfigError

from engine_helpers import (
    LogitMetric,
    RecordHook,
    TinyClassifier,
    loader,
    make_runner,
)

ARCHES = [dict(dims=[16, 24, 32, 48], strides=[1, 2, 2]),
          dict(dims=[16, 24, 32, 48], strides=[2, 1, 2])]
OPTIM = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
             paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
SCHEDULE = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                 end=3),
            dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=10,
                 eta_min_ratio=0.1)]


def _randomize_norms(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-.5, .5)
            m.running_var.uniform_(.5, 2)
            m.weight.data.uniform_(.5, 1.5)
            m.bias.data.uniform_(-.5, .5)


def _rel(a, b):
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.mark.parametrize('arch', ARCHES)
def test_switch_to_shallow_keeps_the_function(arch):
    torch.manual_seed(0)
    deep = VanillaNet(arch, act_num=2, out_indices=(0, 1, 2, 'stem'))
    _randomize_norms(deep)
    deep.eval()
    x = torch.randn(2, 3, 64, 64)
    shallow = copy.deepcopy(deep)
    shallow.switch_to_shallow()
    fused = copy.deepcopy(shallow)
    fused.switch_to_deploy()
    assert (shallow.layout, fused.layout) == ('shallow', 'deploy')
    for a, b, c in zip(deep(x), shallow(x), fused(x)):
        assert _rel(a, b) <= 1e-5 and _rel(a, c) <= 1e-5
    # the shallow form is the paper's network without deep training
    scratch = VanillaNet(arch, act_num=2, out_indices=(0, 1, 2, 'stem'),
                         deep_training=False)
    assert {k: v.shape for k, v in scratch.state_dict().items()} == {
        k: v.shape for k, v in shallow.state_dict().items()}
    # ... which takes the merged weights (a deep model refuses them:
    # tests/engine/test_layout_rule.py)
    scratch.load_state_dict(shallow.state_dict())
    scratch.eval()
    assert all(torch.equal(a, b) for a, b in zip(scratch(x), shallow(x)))


def test_switch_to_shallow_refuses_lambda_below_one():
    net = VanillaNet(ARCHES[0], act_num=1)
    net.set_act_learn(0.5)
    with pytest.raises(RuntimeError, match=r'needs act_learn \(λ\) == 1'):
        net.switch_to_shallow()
    with pytest.raises(ConfigError, match='fuse_at_end needs end=1'):
        DeepTrainingHook(decay_iters=3, end=0.9, fuse_at_end=True)


class SwitchProbe(Hook):
    """Around the merge: the eval output of the deep model just before and
    of the shallow one just after, and the optimizer's view of the model."""
    priority = 'LOWEST'  # after DeepTrainingHook and EMAHook

    def __init__(self):
        self.x = torch.randn(3, 3, 32, 32, generator=torch.Generator()
                             .manual_seed(3))
        self.last_deep, self.seen = None, {}

    def _out(self, model):
        was = model.training
        model.eval()
        with torch.no_grad():
            out = model(self.x)
        model.train(was)
        return out

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = unwrap(runner.model)
        if model.backbone.deep or self.last_deep is None or self.seen:
            return  # not merged yet, resumed merged, or seen
        self.last_deep.backbone.set_act_learn(1.0)
        groups = runner.optim_wrapper.optimizer.param_groups
        self.seen = dict(
            iter=runner.iter, rel=_rel(self._out(self.last_deep),
                                       self._out(model)),
            opt_params={id(p) for g in groups for p in g['params']},
            model_params={id(p) for p in model.parameters()},
            decay_1d={g['weight_decay'] for g in groups
                      for p in g['params'] if p.ndim == 1},
            lrs=[g['lr'] for g in groups])
        ema = [h for h in runner.hooks if isinstance(h, EMAHook)]
        if ema:
            self.seen['ema_layout'] = ema[0].ema_model.module.backbone.layout


class Snapshot(Hook):
    """The model as each iteration starts, before any other hook."""
    priority = 'HIGHEST'

    def __init__(self, probe):
        self.probe = probe

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if unwrap(runner.model).backbone.deep:
            self.probe.last_deep = copy.deepcopy(unwrap(runner.model))


def _train(work_dir, fuse, max_iters=10, hooks=(), **kwargs):
    rec, probe = RecordHook(), SwitchProbe()
    runner = make_runner(
        work_dir, [dict(type='DeepTrainingHook', decay_iters=5,
                        fuse_at_end=fuse), *hooks, Snapshot(probe), probe,
                   rec],
        dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=OPTIM, param_scheduler=SCHEDULE,
        checkpoint=dict(type='AtomicCheckpointHook', interval=3,
                        by_epoch=False),  # as the configs: weights_only resume
        **kwargs)
    runner.train()
    return rec.records, probe.seen, runner


def test_fuse_at_end_in_a_runner(tmp_path):
    ema = [dict(type='EMAHook', momentum=0.1)]
    fused_rec, seen, runner = _train(tmp_path / 'fused', True, hooks=ema)
    plain_rec, _, plain = _train(tmp_path / 'plain', False, hooks=ema)
    model = unwrap(runner.model)
    assert model.backbone.layout == 'shallow'
    assert seen['iter'] == 5 and seen['ema_layout'] == 'shallow'
    assert seen['rel'] <= 1e-5
    # the rebuilt optimizer holds exactly the model's parameters, with the
    # config's rules and the schedule where the unmerged run has it
    assert seen['opt_params'] == seen['model_params']
    assert seen['decay_1d'] == {0.}
    assert seen['lrs'] == pytest.approx([plain_rec[4]['lr']] * len(
        seen['lrs']), rel=1e-12)
    assert [r['lr'] for r in fused_rec] == pytest.approx(
        [r['lr'] for r in plain_rec], rel=1e-12)
    assert [r['loss'] for r in fused_rec[:5]] == [
        r['loss'] for r in plain_rec[:5]]
    # one conv instead of two per stage from the merge on
    n = sum(p.numel() for p in model.parameters())
    assert n < sum(p.numel() for p in unwrap(plain.model).parameters())
    # the EMA copy keeps averaging the merged parameters
    ema_model = next(h for h in runner.hooks
                     if isinstance(h, EMAHook)).ema_model
    w_ema = ema_model.module.backbone.stages[0].conv[0].weight
    w = model.backbone.stages[0].conv[0].weight
    assert ema_model.avg_parameters['backbone.stages.0.conv.0.weight'] \
        is w_ema
    assert not torch.equal(w_ema, w)


@pytest.mark.parametrize('start', [3, 6])  # before / after the merge
def test_fuse_at_end_resumes_exactly(tmp_path, start):
    full, _, runner = _train(tmp_path / 'full', True)
    resumed, _, runner2 = _train(
        tmp_path / 'resumed', True, resume=True,
        load_from=str(tmp_path / 'full' / f'iter_{start}.pth'))
    assert [r['iter'] for r in resumed] == list(range(start, 10))
    assert [r['loss'] for r in resumed] == pytest.approx(
        [r['loss'] for r in full[start:]], rel=1e-6)
    final = unwrap(runner.model).state_dict()
    for k, v in unwrap(runner2.model).state_dict().items():
        assert torch.allclose(v.float(), final[k].float(), rtol=1e-5,
                              atol=1e-7), k
    # the merge replayed on resume rebuilt the optimizer around the model
    held = {p for g in runner2.optim_wrapper.optimizer.param_groups
            for p in g['params']}
    assert held == set(unwrap(runner2.model).parameters())


def test_shallow_checkpoint_tests_fused(tmp_path):
    _train(tmp_path / 'full', True)
    results = []
    for hooks in ([], [dict(type=SwitchToDeployHook)]):
        runner = make_runner(tmp_path / f'test{len(hooks)}', hooks, None,
                             model=TinyClassifier(deep_training=False),
                             load_from=str(tmp_path / 'full/iter_9.pth'),
                             # the configs' hook: load_from under weights_only
                             checkpoint=dict(type='AtomicCheckpointHook'),
                             test_dataloader=loader(6, seed=1),
                             test_evaluator=dict(type=LogitMetric),
                             test_cfg=dict())
        results.append(runner.test())
        assert unwrap(runner.model).backbone.layout == (
            'deploy' if hooks else 'shallow')
    assert results[1]['acc'] == results[0]['acc']
    assert results[1]['mean_logit'] == pytest.approx(
        results[0]['mean_logit'], rel=1e-5, abs=1e-6)
