"""Fusion is exact: the algebra once, then every variant end to end."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vanillanet_mm.models import SeriesActivation, VanillaNet
from vanillanet_mm.models.blocks import conv_norm, merge_deep_pair
from vanillanet_mm.models.fusion import fuse_conv_bn, merge_pointwise
from vanillanet_mm.utils.numerics import max_rel_error, randomize_bn

from conftest import small_arch


def _bn(n, seed):
    bn = nn.BatchNorm2d(n, eps=1e-6).eval()
    randomize_bn(bn, seed)
    return bn


@pytest.mark.parametrize('bias', [True, False])
def test_fuse_conv_bn_matches_bn_of_conv(bias):
    conv = nn.Conv2d(5, 7, 3, padding=1, bias=bias)
    bn = _bn(7, 1)
    x = torch.randn(2, 5, 9, 11)
    w, b = fuse_conv_bn(conv.weight, conv.bias, bn)
    assert w.is_contiguous() and b.is_contiguous()
    assert max_rel_error(bn(conv(x)), F.conv2d(x, w, b, padding=1)) < 1e-6


def test_merge_pointwise_after_padded_strided_conv():
    c1 = nn.Conv2d(3, 6, 4, stride=3, padding=1)
    c2 = nn.Conv2d(6, 5, 1)
    x = torch.randn(2, 3, 17, 23)
    w, b = merge_pointwise(c1.weight, c1.bias, c2.weight, c2.bias)
    assert w.shape == (5, 3, 4, 4) and w.is_contiguous()
    fused = F.conv2d(x, w, b, stride=3, padding=1)
    assert max_rel_error(c2(c1(x)), fused) < 1e-6


def _bn64(x, bn, training=False):
    """BN by its formula in float64: running statistics, or the batch's."""
    if training:
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean.double(), bn.running_var.double()
    view = (1, -1, 1, 1)
    return ((x - mean.view(view)) / (var.view(view) + bn.eps).sqrt()
            * bn.weight.double().view(view) + bn.bias.double().view(view))


@pytest.mark.parametrize('c_in, conv1', [
    (6, dict()),                                     # a stage's conv1
    (3, dict(kernel_size=4, stride=4)),              # the stem
    (3, dict(kernel_size=4, stride=3, padding=1)),   # the ada-pool stem
])
def test_merge_deep_pair_is_the_pair_at_lambda_one(c_in, conv1):
    """conv-BN, leaky ReLU at λ = 1 (the identity), 1x1 conv-BN: merged
    into one conv + the second BN, against the pair computed by hand in
    float64; the kept BN still normalises with batch statistics."""
    torch.manual_seed(0)
    first = conv_norm(c_in, 6, **conv1).eval()
    second = conv_norm(6, 9).eval()
    randomize_bn(first, 2)
    randomize_bn(second, 3)
    x = torch.randn(2, c_in, 23, 17)
    c1, c2 = first[0], second[0]
    z = F.conv2d(x.double(), c1.weight.double(), c1.bias.double(),
                 c1.stride, c1.padding)
    z = F.conv2d(_bn64(z, first[1]), c2.weight.double(), c2.bias.double())
    merged = merge_deep_pair(first, second).eval()
    assert isinstance(merged[0], nn.Conv2d) and len(merged) == 2
    assert merged[0].weight.is_contiguous()
    with torch.no_grad():
        assert max_rel_error(_bn64(z, second[1]), merged(x)) < 1e-6
        pair = second(F.leaky_relu(first(x), 1.0))
        assert max_rel_error(pair, merged(x)) < 1e-6
        merged.train()
        assert max_rel_error(_bn64(z, second[1], training=True),
                             merged(x)) < 1e-5


@pytest.mark.parametrize('act_num', [0, 1, 2, 3, 4])
def test_series_activation_fusion(act_num):
    act = SeriesActivation(6, act_num).eval()
    randomize_bn(act, act_num)
    x = torch.randn(2, 6, 13, 10)
    # independent reference: relu, depthwise conv, BN by formula
    y = F.conv2d(x.clamp(min=0), act.weight, padding=act_num, groups=6)
    bn = act.bn
    ref = (y - bn.running_mean.view(1, -1, 1, 1)) / (
        bn.running_var.view(1, -1, 1, 1) + bn.eps).sqrt() * bn.weight.view(
            1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    assert max_rel_error(ref, act(x)) < 1e-6
    act.switch_to_deploy()
    assert not hasattr(act, 'bn') and act.bias is not None
    assert max_rel_error(ref, act(x)) < 1e-5


def _fused_pair(model, x):
    model.eval()
    model.set_act_learn(1.0)
    randomize_bn(model)
    ref = model(x)
    fused = copy.deepcopy(model)
    fused.switch_to_deploy()
    return ref, fused, fused(x)


class FixedInputBody(VanillaNet):
    """The body of the ada-pool classifier (refused as a dense backbone)."""
    fixed_input_size = True


@pytest.mark.parametrize('name', sorted(VanillaNet.arch_settings))
@pytest.mark.parametrize('act_num', [1, 4])
def test_every_variant_fuses_exactly(name, act_num):
    model = FixedInputBody(small_arch(name), act_num=act_num,
                           out_indices=tuple(range(len(
                               VanillaNet.arch_settings[name]['strides']))))
    x = torch.randn(2, 3, 97, 131)
    ref, fused, out = _fused_pair(model, x)
    assert len(ref) == len(out) == model.num_stages
    for a, b in zip(ref, out):
        assert max_rel_error(a, b) <= 1e-5


@pytest.mark.parametrize('act_num', [1, 2, 3, 4])
def test_fused_form_structure(act_num, tiny_arch):
    model = VanillaNet(tiny_arch, act_num=act_num, out_indices=(0, 1, 2, 3))
    x = torch.randn(1, 3, 97, 131)
    ref, fused, out = _fused_pair(model, x)
    for a, b in zip(ref, out):
        assert max_rel_error(a, b) <= 1e-5
    names = {n for n, _ in fused.named_modules()}
    assert not any(('conv1' in n or 'stem1' in n or n.endswith('.bn'))
                   for n in names)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert all(p.is_contiguous() for p in fused.parameters())
    # the fused model is exactly a deploy-built model with those weights
    deploy = VanillaNet(tiny_arch, act_num=act_num, out_indices=(0, 1, 2, 3),
                        deploy=True).eval()
    deploy.load_state_dict(fused.state_dict())
    for a, b in zip(out, deploy(x)):
        assert torch.equal(a, b)
    # idempotent
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    fused.switch_to_deploy()
    assert all(torch.equal(before[k], v)
               for k, v in fused.state_dict().items())


def test_switch_to_deploy_refuses_unless_lambda_is_one(tiny_arch):
    model = VanillaNet(tiny_arch).eval()
    model.set_act_learn(0.3)
    with pytest.raises(RuntimeError, match=r'act_learn \(λ\) == 1, got 0.3'):
        model.switch_to_deploy()
    assert not model.deploy and hasattr(model, 'stem1')
    x = torch.randn(1, 3, 64, 64)
    before = model(x)[-1]
    model.switch_to_deploy(force=True)
    after = model(x)[-1]
    # forcing really changes the function (λ = 0.3 ≠ identity)
    assert max_rel_error(before, after) > 1e-3
    assert model.act_learn == 1.0


def test_compare_forms_checks_before_it_times(tiny_arch):
    from vanillanet_mm.analysis import compare_forms
    model = VanillaNet(tiny_arch, act_num=1, out_indices=(0, 1, 2, 3)).eval()
    randomize_bn(model)
    model.set_act_learn(1.0)
    torch.manual_seed(3)
    res = compare_forms(model, (32, 32), iters=2, warmup=1)
    # the same input, fused independently
    torch.manual_seed(3)
    fused = copy.deepcopy(model)
    fused.switch_to_deploy()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert res['rel_err'] == max_rel_error(model(x), fused(x)) <= 1e-5
    assert all(res[k]['median_ms'] > 0 for k in ('train_ms', 'fused_ms'))
    assert not model.deploy  # the copy was fused, not the model
    wrong = compare_forms(model, (32, 32), iters=2, warmup=1, tol=-1.0)
    assert wrong['train_ms'] is None and wrong['fused_ms'] is None
