"""VanillaNetLayerDecayOptimizerConstructor: the layer scale on top of
mmengine's paramwise options, each checked parameter by parameter against
a computation written here."""
import logging

import pytest
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from torch import nn

from vanillanet_mm.models import VanillaNet
from vanillanet_mm.models.blocks import SeriesActivation
from vanillanet_mm.utils.errors import ConfigError

LR, WD, RATE, NUM_LAYERS = 0.1, 0.05, 0.5, 2


class Detector(nn.Module):
    """VanillaNet (stem, 3 stages: layers 0, 1, 1, 2) and a neck (layer 3)
    with a conv, a BN and a depthwise conv."""

    def __init__(self, deploy=False):
        super().__init__()
        self.backbone = VanillaNet(
            dict(dims=[8, 8, 16, 16], strides=[1, 2, 2]), act_num=1,
            deploy=deploy)
        self.neck = nn.Sequential(nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8),
                                  nn.Conv2d(8, 8, 3, groups=8))


def scale(name):
    if name.startswith('backbone.stem'):
        layer = 0
    elif name.startswith('backbone.stages.'):
        layer = int(name.split('.')[2]) // 2 + 1
    else:
        layer = NUM_LAYERS + 1
    return RATE**(NUM_LAYERS + 1 - layer)


def owned(model, test):
    """Full names of the parameters of the modules that pass ``test``."""
    return {f'{m_name}.{p_name}' for m_name, m in model.named_modules()
            if test(m) for p_name, _ in m.named_parameters(recurse=False)}


def norms(model):
    return owned(model, lambda m: isinstance(m, nn.BatchNorm2d))


def dwconvs(model):
    """The neck's depthwise nn.Conv2d and the series activations' kernels."""
    return owned(model, lambda m: isinstance(m, SeriesActivation) or (
        isinstance(m, nn.Conv2d) and m.groups == m.in_channels))


def build(model, **paramwise):
    return build_optim_wrapper(model, dict(
        type='OptimWrapper',
        constructor='VanillaNetLayerDecayOptimizerConstructor',
        optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
        paramwise_cfg=dict(num_layers=NUM_LAYERS, decay_rate=RATE,
                           **paramwise))).optimizer


def check(model, optimizer, expected):
    """Every parameter once, with ``expected(name, param)`` = (lr mult,
    weight decay); the lr also carries the layer scale."""
    got = {}
    for g in optimizer.param_groups:
        for p in g['params']:
            assert id(p) not in got, 'a parameter in two groups'
            got[id(p)] = (g['lr'], g['weight_decay'])
    named = list(model.named_parameters())
    assert len(got) == len(named)
    for name, p in named:
        lr_mult, wd = expected(name, p)
        assert got[id(p)] == (pytest.approx(LR * scale(name) * lr_mult),
                              pytest.approx(wd)), name


def flat_zero(name, p):
    return WD * (p.ndim != 1)


def test_default_is_the_official_rule():
    """No options: lr = base · layer scale; 1-D parameters (every bias, the
    norms) without weight decay, the rest with the base one."""
    model = Detector()
    optimizer = build(model)
    check(model, optimizer, lambda n, p: (1., flat_zero(n, p)))
    # one group per (layer, decay), in layer order (checkpoints of earlier
    # runs keep loading)
    assert [round(g['lr_scale'], 6) for g in optimizer.param_groups] == [
        round(RATE**k, 6) for k in (3, 3, 2, 2, 1, 1, 0, 0)]


@pytest.mark.parametrize('keys', [
    {'neck': dict(lr_mult=0.1, decay_mult=0.5)},
    # the longest matching key wins
    {'backbone': dict(lr_mult=0.2), 'backbone.stages.1': dict(lr_mult=3.,
                                                              decay_mult=2.)},
])
def test_custom_keys(keys):
    model = Detector()

    def expected(name, p):
        key = max((k for k in keys if k in name), key=len, default=None)
        if key is None:
            return 1., flat_zero(name, p)  # no key: the other rules
        return keys[key].get('lr_mult', 1.), WD * keys[key].get(
            'decay_mult', 1.)

    check(model, build(model, custom_keys=keys), expected)


def test_norm_decay_mult():
    model = Detector()
    norm = norms(model)
    check(model, build(model, norm_decay_mult=2.), lambda n, p: (
        1., WD * 2. if n in norm else flat_zero(n, p)))


def test_bias_decay_mult():
    """Every bias, the norms' too (mmengine exempts them only for a
    ``norm_decay_mult``)."""
    model = Detector()
    check(model, build(model, bias_decay_mult=0.3), lambda n, p: (
        1., WD * 0.3 if n.endswith('.bias') else flat_zero(n, p)))


@pytest.mark.parametrize('deploy', [False, True])
@pytest.mark.parametrize('bias_decay_mult', [None, 0.3])
def test_dwconv_decay_mult_covers_the_series_activation(deploy,
                                                        bias_decay_mult):
    model = Detector(deploy)
    dw = dwconvs(model)
    assert 'backbone.stages.1.act.weight' in dw
    keys = {'stages.0.act': dict(decay_mult=5.)}  # custom keys come first
    options = dict(dwconv_decay_mult=0.2, custom_keys=keys)
    if bias_decay_mult is not None:
        options['bias_decay_mult'] = bias_decay_mult

    def expected(name, p):
        if 'stages.0.act' in name:
            return 1., WD * 5.
        if bias_decay_mult is not None and name.endswith('.bias'):
            return 1., WD * bias_decay_mult  # mmengine: bias before dwconv
        return 1., WD * 0.2 if name in dw else flat_zero(name, p)

    check(model, build(model, **options), expected)


@pytest.mark.parametrize('mult', [1., 0.5])
def test_flat_decay_mult(mult):
    model = Detector()
    check(model, build(model, flat_decay_mult=mult), lambda n, p: (
        1., WD * (mult if p.ndim == 1 else 1.)))


def test_bypass_duplicate():
    """A backbone conv shared by the neck: kept once (at its backbone
    layer) with bypass_duplicate, else refused."""
    model = Detector()
    model.neck.add_module('shared', model.backbone.stages[0].conv1[0])
    check(model, build(model, bypass_duplicate=True),
          lambda n, p: (1., flat_zero(n, p)))
    with pytest.raises(ConfigError, match='stages.0.conv1.0.weight is shared'
                       '.*set paramwise_cfg.bypass_duplicate=True'):
        build(model)


def test_log_is_one_table_row_per_group():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        optimizer = build(Detector(), norm_decay_mult=2.)
    finally:
        logger.removeHandler(handler)
    lines = [r.getMessage() for r in records]
    assert not any('paramwise_options' in m for m in lines)  # per parameter
    table, = (m for m in lines if m.startswith('VanillaNet layer decay'))
    # title, header, one row per group
    assert len(table.splitlines()) == 2 + len(optimizer.param_groups)


@pytest.mark.parametrize('paramwise, match', [
    (dict(decay_rate=0.6), 'lacks num_layers: set e.g. num_layers=6'),
    (dict(num_layers=6, decay_rate=0.6, decay_type='block_wise'),
     "decay_type must be 'layer_wise' or 'stage_wise'"),
    (dict(num_layers=1, decay_rate=0.6),
     'raise paramwise_cfg.num_layers'),
])
def test_bad_paramwise_cfg(paramwise, match):
    with pytest.raises(ConfigError, match=match):
        build_optim_wrapper(Detector(), dict(
            constructor='VanillaNetLayerDecayOptimizerConstructor',
            optimizer=dict(type='SGD', lr=LR), paramwise_cfg=paramwise))
