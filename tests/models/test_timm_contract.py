"""timm's model contract on every registered VanillaNet, checked as timm's
``tests/test_models.py`` checks its own models, and the torch + timm only
import of the models.

Narrow widths (``arch=small_arch(name)``: every width / 64, depth, strides
and pools as the variant) at 64x64, the ada-pool variant at its fixed
input size (224, its pools give 10x10 whatever the input): the whole
contract on all variants takes seconds.
"""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.models import FeatureInfo, group_modules, group_parameters
from timm.optim import param_groups_layer_decay

from vanillanet_mm.models import VanillaNet

from conftest import small_arch

NAMES = sorted(VanillaNet.arch_settings)
SMALL = 64  # input size of the variants without a fixed one
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny tensors: threads only add their start-up and, on a shared
    machine, their spinning (10x the run time on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def create(name, **kwargs):
    return timm.create_model(name, arch=small_arch(name), **kwargs)


def input_size(model):
    """timm's rule: a fixed_input_size model runs at its cfg size; the
    others here at SMALL."""
    cfg = model.pretrained_cfg
    return (cfg['input_size'] if cfg.get('fixed_input_size') else
            (3, SMALL, SMALL))


def pool_size(model):
    """The cfg's pool_size at the cfg input size; at SMALL, adapted."""
    cfg = model.pretrained_cfg
    if cfg.get('fixed_input_size'):
        return cfg['pool_size']
    reduction = model.feature_info[-1]['reduction']
    assert cfg['pool_size'] == (cfg['input_size'][-1] // reduction,) * 2
    return (SMALL // reduction,) * 2


@pytest.mark.parametrize('name', NAMES)
def test_forward_and_backward(name):
    """test_model_forward, test_model_backward: every parameter gets a
    gradient."""
    model = create(name)
    size = input_size(model)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, *size))
    assert out.shape == (1, 1000) and not out.isnan().any()
    model = create(name, num_classes=42).train()
    out = model(torch.randn(2, *size))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert out.shape == (2, 42) and not out.isnan().any()


@pytest.mark.parametrize('deploy', [False, True], ids=['training', 'deploy'])
@pytest.mark.parametrize('name', NAMES)
def test_default_cfgs(name, deploy):
    """test_model_default_cfgs, in the training and the fused form."""
    model = create(name, deploy=deploy).eval()
    assert model.num_classes >= 0 and model.num_features > 0
    assert model.head_hidden_size > 0
    state_dict = model.state_dict()
    cfg = model.pretrained_cfg
    pool = pool_size(model)
    x = torch.randn(1, *input_size(model))
    with torch.no_grad():
        # forward_features (always unpooled) and forward_head(pre_logits)
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert feats.shape[-2:] == pool
        assert feats.shape[1] == model.num_features
        assert pre.shape == (1, model.head_hidden_size)
        # classifier deleted: pooled features, as pre_logits
        model.reset_classifier(0)
        out = model(x)
        assert out.shape == pre.shape
        # classifier and pooling deleted: the unpooled map
        model.reset_classifier(0, '')
        assert model(x).shape[-2:] == pool and model(x).dim() == 4
        # the same through __init__
        model = create(name, deploy=deploy, num_classes=0,
                       global_pool='').eval()
        assert model(x).shape == feats.shape
    classifier = cfg['classifier']
    for c in (classifier,) if isinstance(classifier, str) else classifier:
        assert c + '.weight' in state_dict, f'{c} not in model params'
    first_conv = cfg['first_conv']
    assert first_conv + '.weight' in state_dict, first_conv
    assert state_dict[first_conv + '.weight'].shape[1] == 3


@pytest.mark.parametrize('name', NAMES)
def test_get_and_reset_classifier(name):
    model = create(name, num_classes=10).eval()
    head = model.get_classifier()
    head_params = {id(p) for p in head.parameters()}
    assert head_params and head_params == {
        id(p) for n, p in model.named_parameters() if n.startswith('head.')}
    x = torch.randn(2, *input_size(model))
    model.reset_classifier(5)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
    assert model.num_classes == 5 == model.get_classifier().num_classes


@pytest.mark.parametrize('name', NAMES)
def test_grad_checkpointing(name, monkeypatch):
    """set_grad_checkpointing: each stage checkpointed, same outputs and
    gradients."""
    model = create(name, num_classes=10).train()
    x = torch.randn(2, *input_size(model))
    model(x).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    calls = []
    original = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint',
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    assert len(calls) == len(model.stages)
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[n], rtol=1e-4, atol=1e-6), n
    feats = model.forward_intermediates(x, intermediates_only=True)
    assert len(calls) == 2 * len(model.stages) and len(feats) == len(
        model.stages)


@pytest.mark.parametrize('coarse', [False, True])
@pytest.mark.parametrize('name', NAMES)
def test_group_matcher(name, coarse):
    """group_matcher with timm's group_parameters / group_modules: every
    parameter in exactly one group, stem first, head last; layer decay."""
    model = create(name)
    matcher = model.group_matcher(coarse=coarse)
    groups = group_parameters(model, matcher)
    names = [n for g in groups.values() for n in g]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    ordered = list(groups.values())
    assert all(n.startswith('stem.') for n in ordered[0])
    assert all(n.startswith('head.') for n in ordered[-1])
    assert len(groups) == len(model.stages) + 2
    modules = group_modules(model, matcher)
    assert len(modules) == len(groups)
    decay = param_groups_layer_decay(model, layer_decay=0.8)
    assert sum(len(g['params']) for g in decay) == len(names)


@pytest.mark.parametrize('name', NAMES)
def test_forward_intermediates(name):
    """test_model_forward_intermediates."""
    model = create(name).eval()
    info = FeatureInfo(model.feature_info, len(model.feature_info))
    assert len(info.channels()) >= 3
    size = input_size(model)
    x = torch.randn(1, *size)
    with torch.no_grad():
        out, feats = model.forward_intermediates(x, output_fmt='NCHW')
        assert len(feats) == len(info.channels())
        for c, r, f in zip(info.channels(), info.reduction(), feats):
            assert f.shape[:2] == (1, c) and not f.isnan().any()
            assert all(s <= math.ceil(n / r) + 1
                       for s, n in zip(f.shape[-2:], size[-2:]))
        assert torch.allclose(out, model.forward_features(x))
        last = model.forward_intermediates(x, indices=2, stop_early=True,
                                           intermediates_only=True)
        assert [f.shape for f in last] == [f.shape for f in feats[-2:]]


@pytest.mark.parametrize('name', NAMES)
def test_features_only(name):
    """test_model_forward_features; explicit out_indices prune the rest."""
    model = create(name, features_only=True).eval()
    channels = model.feature_info.channels()
    assert len(channels) >= 3
    size = input_size(model)
    with torch.no_grad():
        outs = model(torch.randn(1, *size))
    assert [o.shape[1] for o in outs] == channels
    for r, o in zip(model.feature_info.reduction(), outs):
        assert all(s <= math.ceil(n / r) + 1
                   for s, n in zip(o.shape[-2:], size[-2:]))
    first = create(name, features_only=True, out_indices=(0, 1))
    assert len(first.model.stages) == 2
    assert not any(k.startswith('head.') for k in first.state_dict())


def test_imports_torch_and_timm_only():
    """The timm models import no mmcv, mmengine, mmdet or mmseg.

    A fresh interpreter blocks those four (``sys.modules[name] = None``
    makes every ``import name`` or ``import name.sub`` raise), then imports
    :mod:`vanillanet_mm.models.timm_models` and runs
    ``timm.create_model('vanillanet_5')``. The packages ``vanillanet_mm``
    and ``vanillanet_mm.models`` are entered as bare package modules (their
    ``__path__`` only): their ``__init__`` registers the OpenMMLab side
    (backbone, hooks) and does import mmengine by design; what is proven
    is the import closure of the timm module itself.
    """
    script = f'''
import sys, types
BLOCKED = ('mmcv', 'mmengine', 'mmdet', 'mmseg')
for name in BLOCKED:
    sys.modules[name] = None
for pkg in ('vanillanet_mm', 'vanillanet_mm.models'):
    module = types.ModuleType(pkg)
    module.__path__ = [{str(ROOT)!r} + '/' + pkg.replace('.', '/')]
    sys.modules[pkg] = module
import timm, torch
import vanillanet_mm.models.timm_models as tm
assert tm.__file__.startswith({str(ROOT)!r}), tm.__file__
model = timm.create_model('vanillanet_5').eval()
with torch.no_grad():
    out = model(torch.randn(1, 3, 64, 64))
assert out.shape == (1, 1000), out.shape
loaded = [m for m, v in sys.modules.items()
          if v is not None and m.split('.')[0] in BLOCKED]
assert not loaded, loaded
print('ok')
'''
    run = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert run.returncode == 0 and run.stdout.strip() == 'ok', run.stderr
