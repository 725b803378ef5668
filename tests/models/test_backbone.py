"""Backbone shapes, arguments, λ, freezing and every bad argument."""
import math

import pytest
import torch
from torch import nn

from vanillanet_mm.models import VanillaNet

from conftest import small_arch

DENSE = sorted(k for k, v in VanillaNet.arch_settings.items()
               if not v['ada_pool'])


@pytest.mark.parametrize('name', DENSE)
def test_shapes_and_channels_of_every_variant(name):
    arch = small_arch(name)
    strides = arch['strides']
    model = VanillaNet(arch, out_indices=tuple(range(len(strides))) +
                       ('stem', )).eval()
    h, w = 192, 256
    outs = model(torch.randn(2, 3, h, w))
    assert len(outs) == len(strides) + 1
    assert model.out_channels == arch['dims'][1:] + arch['dims'][:1]
    size = (h // 4, w // 4)
    assert outs[-1].shape == (2, arch['dims'][0], *size)
    for i, out in enumerate(outs[:-1]):
        if strides[i] == 2:
            size = (size[0] // 2, size[1] // 2)
        assert out.shape == (2, arch['dims'][i + 1], *size), (name, i)
    assert model.total_stride == h // outs[-2].shape[-2]


def test_ada_pool_is_refused_as_a_backbone_and_kept_by_the_classifier():
    import timm
    name = 'vanillanet_13_x1_5_ada_pool'
    arch = small_arch(name)
    for a in (name, arch):
        with pytest.raises(ValueError, match="fixed sizes.*'vanillanet_13_x1"
                           "_5'"):
            VanillaNet(a)
    # the official classifier pools stages 1, 2 and 9 to 38, 19 and 10
    # whatever the input
    clf = timm.create_model(name, arch=arch, num_classes=0).eval()
    for size in (224, 320):
        with torch.no_grad():
            feats = clf.forward_intermediates(torch.randn(1, 3, size, size),
                                              intermediates_only=True)
        assert [feats[i].shape[-2:] for i in (1, 2, 9)] == [
            (38, 38), (19, 19), (10, 10)]


@pytest.mark.parametrize('norm_cfg', [
    dict(type='GN', num_groups=4), dict(type='LN'), dict(type='IN'),
    dict(type='BN', track_running_stats=False)])
def test_norms_that_cannot_fuse_are_refused_at_build(tiny_arch, norm_cfg):
    with pytest.raises(ValueError, match="cannot be fused.*type='BN'"):
        VanillaNet(tiny_arch, norm_cfg=norm_cfg)


@pytest.mark.parametrize('norm_cfg', [
    dict(type='BN'), dict(type='SyncBN'), dict(type=nn.BatchNorm2d)])
def test_batch_norms_build_and_fuse(tiny_arch, norm_cfg):
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(VanillaNet(tiny_arch, norm_cfg=norm_cfg))
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    before = model(x)[-1]
    model.switch_to_deploy()
    assert torch.allclose(model(x)[-1], before, rtol=1e-4, atol=1e-5)


def test_full_width_vn13_detection_outputs():
    # Official detection use: out_indices (0, 1, 8, 10) -> /4 /8 /16 /32.
    model = VanillaNet('vanillanet_13', act_num=4,
                       out_indices=(0, 1, 8, 10)).eval()
    assert model.out_channels == [512, 1024, 2048, 4096]
    assert model.stages[0].act.weight.shape == (512, 1, 9, 9)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (512, 16, 24), (1024, 8, 12), (2048, 4, 6), (4096, 2, 3)]


def test_out_indices_order_and_negative(tiny_arch):
    model = VanillaNet(tiny_arch, out_indices=(-1, 0, 'stem')).eval()
    assert model.out_indices == [3, 0, 'stem']
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 8, 8] == model.out_channels
    assert outs[0].shape[-1] == 4 and outs[2].shape[-1] == 16


def test_act_learn_set_get(tiny_arch):
    model = VanillaNet(tiny_arch)
    assert model.act_learn == 1.0  # fresh model: the official function
    assert VanillaNet(tiny_arch, act_learn=0.0).act_learn == 0.0
    model.set_act_learn(0.25)
    assert model.act_learn == 0.25
    assert all(s.act_learn == 0.25 for s in model.stages)
    # λ travels in the state dict
    other = VanillaNet(tiny_arch)
    other.load_state_dict(model.state_dict())
    assert other.act_learn == 0.25
    assert all(s.act_learn == 0.25 for s in other.stages)
    assert VanillaNet(tiny_arch, deploy=True).act_learn == 1.0


def test_act_learn_changes_the_function(tiny_arch):
    model = VanillaNet(tiny_arch).eval()
    x = torch.randn(1, 3, 64, 64)
    model.set_act_learn(0.0)
    a = model(x)[-1]
    model.set_act_learn(1.0)
    b = model(x)[-1]
    # independent check of λ = 1 on one block: leaky(·, 1) is the identity
    blk = model.stages[0]
    y = torch.randn(1, 8, 6, 6)
    assert torch.allclose(blk(y), blk.act(blk.pool(blk.conv2(blk.conv1(y)))))
    assert not torch.allclose(a, b)


def _trainable(module):
    return [p.requires_grad for p in module.parameters()]


@pytest.mark.parametrize('frozen', [0, 2])
def test_frozen_stages(tiny_arch, frozen):
    model = VanillaNet(tiny_arch, frozen_stages=frozen)
    model.train()
    frozen_mods = [model.stem1, model.stem2, *model.stages[:frozen]]
    free_mods = list(model.stages[frozen:])
    assert not any(any(_trainable(m)) for m in frozen_mods)
    assert all(all(_trainable(m)) for m in free_mods)
    assert not any(m.training for fm in frozen_mods for m in fm.modules())
    assert all(m.training for fm in free_mods for m in fm.modules())
    # a training step leaves the frozen BN statistics untouched
    stats = model.stem1[1].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))[-1].sum().backward()
    assert torch.equal(stats, model.stem1[1].running_mean)
    assert model.stem1[0].weight.grad is None


def test_norm_eval(tiny_arch):
    model = VanillaNet(tiny_arch, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns)
    assert model.stages[0].conv1[0].training


def test_with_cp_gives_same_gradients(tiny_arch):
    torch.manual_seed(0)
    a = VanillaNet(tiny_arch)
    b = VanillaNet(tiny_arch, with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    for m in (a, b):
        m.train()
        m(x)[-1].square().mean().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), n


def test_syncbn_norm_cfg(tiny_arch):
    model = VanillaNet(tiny_arch, norm_cfg=dict(type='SyncBN', eps=1e-6))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='vanillanet_99'), "unknown VanillaNet arch 'vanillanet_99'"),
    (dict(arch=dict(dims=[8, 8])), "'dims' and 'strides'"),
    (dict(arch=dict(dims=[8, 8], strides=[1, 2])), 'one entry more'),
    (dict(act_num=-1), 'act_num must be an integer >= 0'),
    (dict(act_num=1.5), 'act_num must be an integer >= 0'),
    (dict(out_indices=(4, )), 'out_indices entry 4 is out of range'),
    (dict(out_indices=(-5, )), 'out_indices entry -5 is out of range'),
    (dict(frozen_stages=7), 'frozen_stages must be in'),
])
def test_bad_arguments(tiny_arch, kwargs, match):
    kwargs.setdefault('arch', tiny_arch)
    with pytest.raises(ValueError, match=match):
        VanillaNet(**kwargs)


def test_bad_inputs(tiny_arch):
    model = VanillaNet(tiny_arch)
    with pytest.raises(ValueError, match=r'expects input \(N, 3, H, W\)'):
        model(torch.randn(1, 1, 64, 64))
    stride = 4 * math.prod(tiny_arch['strides'])
    assert model.total_stride == stride
    with pytest.raises(ValueError, match='smaller than the total stride 16'):
        model(torch.randn(1, 3, 15, 64))
