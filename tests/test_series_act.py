"""The fused series-activation kernel against the PyTorch definition.

Without a GPU the Triton kernel runs in the Triton interpreter
(TRITON_INTERPRET=1, set by conftest.py before triton is imported).
"""
import pytest
import torch

from vanillanet_mm.models import VanillaNet
from vanillanet_mm.ops import (ENV_VAR, resolve_impl, series_act,
                               series_act_reference)

pytest.importorskip('triton')
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _inputs(n, c, h, w, act_num, dtype=torch.float32, channels_last=False,
            seed=0):
    g = torch.Generator().manual_seed(seed)
    k = 2 * act_num + 1
    x = torch.randn(n, c, h, w, generator=g).to(DEVICE, dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = (torch.randn(c, 1, k, k, generator=g) / k).to(DEVICE)
    bias = torch.randn(c, generator=g).to(DEVICE)
    return x, weight, bias


def _rel_err(out, ref):
    return ((out.float() - ref.float()).abs().max()
            / ref.float().abs().max()).item()


@pytest.mark.parametrize('n,c,h,w,act_num', [
    (1, 3, 7, 9, 1),      # odd H/W, C not a multiple of any tile
    (2, 5, 11, 6, 2),     # batch > 1
    (1, 17, 9, 13, 3),    # kernel larger than parts of the image
    (2, 10, 12, 15, 4),   # act_num 4: the 9x9 of the detection configs
    (1, 4, 3, 2, 4),      # image smaller than the kernel
    (1, 6, 5, 5, 0),      # act_num 0: ReLU + per-channel affine
])
@pytest.mark.parametrize('channels_last', [False, True])
def test_matches_pytorch_fp32(n, c, h, w, act_num, channels_last):
    x, weight, bias = _inputs(n, c, h, w, act_num,
                              channels_last=channels_last)
    out = series_act(x, weight, bias, act_num, impl='triton')
    ref = series_act_reference(x, weight, bias, act_num)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last
                             if channels_last else torch.contiguous_format)
    assert _rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16],
                         ids=['fp16', 'bf16'])
@pytest.mark.parametrize('channels_last', [False, True])
def test_half_precision_within_dtype_tolerance(dtype, channels_last):
    x, weight, bias = _inputs(1, 9, 10, 7, 4, dtype, channels_last)
    out = series_act(x, weight, bias, 4, impl='triton')
    assert out.dtype == dtype
    # the reference in fp32 on the same (rounded) input: the kernel
    # accumulates in fp32 and rounds once, so its error is one rounding
    ref = series_act_reference(x.float(), weight, bias, 4)
    assert _rel_err(out, ref) <= TOL[dtype]


def test_non_contiguous_input():
    x, weight, bias = _inputs(1, 12, 9, 10, 2)
    x = x[:, ::2]  # every other channel: strided, neither layout
    weight, bias = weight[::2], bias[::2]
    out = series_act(x, weight, bias, 2, impl='triton')
    ref = series_act_reference(x, weight, bias, 2)
    assert _rel_err(out, ref) <= 1e-5


def test_gradients_match_pytorch():
    x, weight, bias = _inputs(2, 3, 6, 7, 1)
    x.data[x.abs() < 1e-3] = 0.5  # keep away from ReLU's kink
    leaves = [t.double().requires_grad_() for t in (x, weight, bias)]
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    grad = torch.randn(2, 3, 6, 7, dtype=torch.float64, device=DEVICE)
    (series_act(*leaves, 1, impl='triton') * grad).sum().backward()
    (series_act_reference(*ref_leaves, 1) * grad).sum().backward()
    for got, ref in zip(leaves, ref_leaves):
        torch.testing.assert_close(got.grad, ref.grad, rtol=1e-9, atol=1e-9)


def test_impl_selection(monkeypatch):
    x = torch.zeros(1, 2, 3, 3)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_impl('auto', x) == 'torch'  # CPU tensor
    assert resolve_impl('torch', x) == 'torch'
    monkeypatch.setenv(ENV_VAR, 'triton')
    assert resolve_impl('auto', x) == 'triton'  # interpreter here
    assert resolve_impl('torch', x) == 'torch'  # an explicit choice wins
    monkeypatch.setenv(ENV_VAR, 'cuda')
    with pytest.raises(ValueError, match=ENV_VAR):
        resolve_impl('auto', x)
    with pytest.raises(ValueError, match='act_impl must be one of'):
        resolve_impl('fast', x)
    monkeypatch.delenv('TRITON_INTERPRET')
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='needs Triton and a CUDA'):
            resolve_impl('triton', x)


@pytest.mark.parametrize('channels_last', [False, True])
def test_fused_backbone_with_kernel_matches_plain_ops(tiny_arch,
                                                      channels_last):
    model = VanillaNet(tiny_arch, act_num=2, out_indices=(0, 1, 2, 3),
                       act_learn=1.0, deploy=True).to(DEVICE).eval()
    x = torch.randn(2, 3, 33, 35, device=DEVICE)
    with torch.no_grad():
        model.set_act_impl('torch')
        ref = model(x)
        model.set_act_impl('triton')
        model.channels_last = channels_last
        out = model(x)
    for o, r in zip(out, ref):
        assert o.is_contiguous(memory_format=torch.channels_last) == \
            channels_last
        assert _rel_err(o, r) <= 1e-5


def test_backbone_rejects_unknown_act_impl(tiny_arch):
    with pytest.raises(ValueError, match=r"act_impl must be one of \('auto'"):
        VanillaNet(tiny_arch, act_impl='cudnn')
