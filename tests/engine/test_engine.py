"""DeepTrainingHook, SwitchToDeployHook and the layer-decay constructor,
each inside a real MMEngine Runner."""
import math

import pytest
import torch
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from vanillanet_mm import DeepTrainingHook
from vanillanet_mm.models import VanillaNet

from engine_helpers import (
    LogitMetric,
    RecordHook,
    TinyClassifier,
    loader,
    make_runner,
)


def _train(tmp_path, hook_cfg, train_cfg, extra_hooks=(), **kwargs):
    rec = RecordHook()
    runner = make_runner(tmp_path, [dict(type='DeepTrainingHook', **hook_cfg),
                                    *extra_hooks, rec], train_cfg, **kwargs)
    runner.train()
    return rec.records, runner


def test_linear_per_iter_iter_based(tmp_path):
    recs, runner = _train(tmp_path, dict(decay_iters=8),
                          dict(type='IterBasedTrainLoop', max_iters=10))
    got = [r['act_learn'] for r in recs]
    assert got == pytest.approx([min(i / 8, 1.) for i in range(10)])
    assert [r['logged'] for r in recs] == pytest.approx(got)
    assert runner.model.backbone.act_learn == 1.0


def test_cosine_per_iter_epoch_based(tmp_path):
    recs, _ = _train(tmp_path, dict(decay_epochs=2, schedule='cosine'),
                     dict(by_epoch=True, max_epochs=3))
    assert len(recs) == 12  # 8 images / batch 2 = 4 iters per epoch
    for r in recs:
        t = min((r['epoch'] + r['batch_idx'] / 4) / 2, 1)
        assert r['act_learn'] == pytest.approx(0.5 * (1 - math.cos(math.pi *
                                                                   t)))


def test_per_epoch_official_step(tmp_path):
    recs, _ = _train(tmp_path, dict(decay_epochs=2, per_iter=False,
                                    start=0.2),
                     dict(by_epoch=True, max_epochs=3))
    for r in recs:
        assert r['act_learn'] == pytest.approx(0.2 + 0.8 * min(r['epoch'] / 2,
                                                               1))
        assert r['logged'] == pytest.approx(r['act_learn'])


def test_ema_model_follows_lambda(tmp_path):
    recs, _ = _train(tmp_path, dict(decay_iters=6),
                     dict(type='IterBasedTrainLoop', max_iters=8),
                     extra_hooks=[dict(type='EMAHook', momentum=0.1)])
    assert all(r['ema'] == [r['act_learn']] for r in recs)
    assert len({r['act_learn'] for r in recs}) > 5


def test_lambda_in_text_log(tmp_path):
    _, runner = _train(tmp_path, dict(decay_iters=4),
                       dict(type='IterBasedTrainLoop', max_iters=5))
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'act_learn: 0.2500' in log and 'act_learn: 0.5000' in log


def test_resume_mid_anneal_continues_lambda_exactly(tmp_path):
    cfg = dict(type='IterBasedTrainLoop', max_iters=8)
    # the configs' hook: --resume loads under torch's weights_only default
    ckpt = dict(type='AtomicCheckpointHook', interval=4, by_epoch=False)
    full, _ = _train(tmp_path / 'full', dict(decay_iters=7), cfg,
                     checkpoint=ckpt)
    resumed, runner = _train(
        tmp_path / 'resumed', dict(decay_iters=7), cfg, checkpoint=ckpt,
        resume=True, load_from=str(tmp_path / 'full' / 'iter_4.pth'))
    assert [r['iter'] for r in resumed] == [4, 5, 6, 7]
    assert [r['act_learn'] for r in resumed] == [r['act_learn']
                                                 for r in full[4:]]
    assert [r['loss'] for r in resumed] == pytest.approx(
        [r['loss'] for r in full[4:]], rel=1e-5)


EPOCHS2 = dict(by_epoch=True, max_epochs=2)  # 4 iterations an epoch
ITERS8 = dict(type='IterBasedTrainLoop', max_iters=8)


@pytest.mark.parametrize('hook_cfg, train_cfg, last', [
    (dict(decay_epochs=3), EPOCHS2, 1.75),
    # per_iter: the last update is 1/4 epoch before the end
    (dict(decay_epochs=2), EPOCHS2, 1.75),
    # per epoch: the last update is at the start of the last epoch
    (dict(decay_epochs=1.5, per_iter=False), EPOCHS2, 1),
    (dict(decay_iters=8), EPOCHS2, 7),
    (dict(decay_iters=8, fuse_at_end=True), ITERS8, 7),
    (dict(decay_epochs=2), ITERS8, 1.75),
])
def test_lambda_short_of_end_refuses_before_training(tmp_path, hook_cfg,
                                                     train_cfg, last):
    rec = RecordHook()
    runner = make_runner(tmp_path, [dict(type='DeepTrainingHook',
                                         **hook_cfg), rec], train_cfg)
    name = 'decay_epochs' if 'decay_epochs' in hook_cfg else 'decay_iters'
    with pytest.raises(ValueError, match=f'set {name} <= {last:g} or'):
        runner.train()
    assert rec.records == []


@pytest.mark.parametrize('hook_cfg, train_cfg, last_update', [
    (dict(decay_epochs=1.75), EPOCHS2, 7),
    (dict(decay_epochs=1, per_iter=False), EPOCHS2, 4),
    (dict(decay_iters=7), EPOCHS2, 7),
    (dict(decay_iters=7, fuse_at_end=True), ITERS8, 7),
    (dict(decay_epochs=1.75, schedule='cosine'), ITERS8, 7),
    (dict(decay_epochs=3, start=1.0), EPOCHS2, 0),  # pinned: no decay
])
def test_lambda_reaching_end_at_the_last_update_trains(
        tmp_path, hook_cfg, train_cfg, last_update):
    recs, runner = _train(tmp_path, hook_cfg, train_cfg)
    lams = [r['act_learn'] for r in recs]
    assert len(lams) == 8
    assert lams.index(1.0) == last_update and lams[-1] == 1.0
    if hook_cfg.get('fuse_at_end'):
        assert runner.model.backbone.layout == 'shallow'


def test_hook_argument_errors():
    with pytest.raises(ValueError, match='exactly one of'):
        DeepTrainingHook()
    with pytest.raises(ValueError, match='exactly one of'):
        DeepTrainingHook(decay_epochs=1, decay_iters=1)
    with pytest.raises(ValueError, match="'linear' or 'cosine'"):
        DeepTrainingHook(decay_iters=3, schedule='step')
    hook = DeepTrainingHook(decay_iters=100, schedule='cosine')
    assert hook.act_learn_at(50) == pytest.approx(0.5)
    assert hook.act_learn_at(500) == 1.0


def _test(tmp_path, hooks, model):
    runner = make_runner(tmp_path, hooks, None, model=model,
                         test_dataloader=loader(6, seed=1),
                         test_evaluator=dict(type=LogitMetric),
                         test_cfg=dict())
    return runner.test(), runner


def test_switch_to_deploy_hook_keeps_metrics(tmp_path):
    torch.manual_seed(1)
    model = TinyClassifier()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-.5, .5)
            m.running_var.uniform_(.5, 2)
    model.backbone.set_act_learn(1.0)
    state = model.state_dict()
    plain, _ = _test(tmp_path / 'plain', [], model)
    model2 = TinyClassifier()
    model2.load_state_dict(state)
    fused, runner = _test(tmp_path / 'fused',
                          [dict(type='SwitchToDeployHook')], model2)
    assert runner.model.backbone.deploy
    assert fused['acc'] == plain['acc']
    assert fused['mean_logit'] == pytest.approx(plain['mean_logit'],
                                                rel=1e-5, abs=1e-6)


def test_switch_to_deploy_hook_refuses_lambda_below_one(tmp_path):
    model = TinyClassifier()
    model.backbone.set_act_learn(0.5)
    with pytest.raises(RuntimeError, match=r'needs act_learn \(λ\) == 1'):
        _test(tmp_path, [dict(type='SwitchToDeployHook')], model)


class _Detector(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = VanillaNet('vanillanet_13', act_num=4,
                                   out_indices=(0, 1, 8, 10))
        self.neck = nn.Conv2d(4096, 8, 1)


@pytest.fixture(scope='module')
def vn13_groups():
    model = _Detector()
    wrapper = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='VanillaNetLayerDecayOptimizerConstructor',
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(
            type='AdamW', lr=1.3e-4, weight_decay=0.05)),
        paramwise_cfg=dict(num_layers=6, decay_rate=0.6)))(model)
    by_name = {}
    for g in wrapper.optimizer.param_groups:
        for n in g['param_names']:
            by_name[n] = (g['lr'], g['weight_decay'])
    return model, by_name


def test_layer_decay_table(vn13_groups):
    model, by_name = vn13_groups
    # hand-computed table for VN13, num_layers 6, decay 0.6
    table = {'backbone.stem1.0.weight': 0.02799,
             'backbone.stem2.2.weight': 0.02799,
             'backbone.stages.0.conv1.0.weight': 0.04666,
             'backbone.stages.1.act.weight': 0.04666,
             'backbone.stages.2.conv2.0.weight': 0.07776,
             'backbone.stages.3.conv1.0.weight': 0.07776,
             'backbone.stages.4.conv1.0.weight': 0.1296,
             'backbone.stages.5.conv1.0.weight': 0.1296,
             'backbone.stages.6.conv1.0.weight': 0.216,
             'backbone.stages.7.conv1.0.weight': 0.216,
             'backbone.stages.8.conv1.0.weight': 0.36,
             'backbone.stages.9.conv1.0.weight': 0.36,
             'backbone.stages.10.conv2.0.weight': 0.6,
             'neck.weight': 1.0}
    for name, scale in table.items():
        lr, wd = by_name[name]
        assert lr == pytest.approx(1.3e-4 * scale, rel=1e-3), name
        assert wd == 0.05, name
    n_params = sum(1 for p in model.parameters())
    assert len(by_name) == n_params  # every parameter in exactly one group


def test_layer_decay_no_weight_decay_for_bias_and_1d(vn13_groups):
    _, by_name = vn13_groups
    for name in ('backbone.stem1.0.bias', 'backbone.stages.3.conv1.1.weight',
                 'backbone.stages.10.act.bn.bias', 'neck.bias'):
        assert by_name[name][1] == 0.0, name
    assert by_name['backbone.stages.3.conv1.1.weight'][0] == pytest.approx(
        1.3e-4 * 0.6**5)


def test_stage_wise_and_too_few_layers():
    build = OPTIM_WRAPPER_CONSTRUCTORS.build
    model = TinyClassifier()
    cfg = dict(type='VanillaNetLayerDecayOptimizerConstructor',
               optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(
                   type='SGD', lr=1.0, weight_decay=0.1)),
               paramwise_cfg=dict(num_layers=3, decay_rate=0.5,
                                  decay_type='stage_wise'))
    groups = build(cfg)(model).optimizer.param_groups
    lrs = {n: g['lr'] for g in groups for n in g['param_names']}
    assert lrs['backbone.stages.0.conv1.0.weight'] == 0.5**3
    assert lrs['backbone.stages.2.conv1.0.weight'] == 0.5
    assert lrs['head.weight'] == 1.0
    cfg['paramwise_cfg']['num_layers'] = 2
    with pytest.raises(ValueError, match='raise paramwise_cfg.num_layers'):
        build(cfg)(model)
