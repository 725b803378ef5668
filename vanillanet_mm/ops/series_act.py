"""The deploy-form series activation, ``relu → depthwise (2n+1)² conv + bias``.

At detection resolution the fused VanillaNet spends most of its GPU time here:
cuDNN's depthwise 9x9 conv is far from memory speed and, in channels_last,
adds layout transforms. :func:`series_act` runs it as ONE Triton pass (ReLU,
taps, bias; fp32 accumulation; NCHW or channels_last, fp32/fp16/bf16) on CUDA
tensors and as the plain PyTorch ops elsewhere.

Choosing the implementation (``impl``):

* ``'auto'`` (default): the env var ``VANILLANET_ACT_IMPL`` (``triton`` or
  ``torch``) if set, else Triton for CUDA tensors when Triton is importable,
  PyTorch otherwise;
* ``'triton'`` / ``'torch'``: force one path. Triton needs CUDA tensors, or
  ``TRITON_INTERPRET=1`` (set before the first call; CPU tests use it).

The Triton path is differentiable: its backward uses PyTorch's conv gradient
ops, so a fused model can still be fine-tuned.
"""
import os

import torch
import torch.nn.functional as F
from torch import Tensor

IMPLS = ('auto', 'triton', 'torch')
ENV_VAR = 'VANILLANET_ACT_IMPL'


def series_act_reference(x: Tensor, weight: Tensor, bias: Tensor,
                         act_num: int) -> Tensor:
    """The PyTorch definition: ``conv2d(relu(x), weight, bias, groups=C)``."""
    return F.conv2d(F.relu(x), weight, bias, padding=act_num,
                    groups=x.shape[1])


def _triton_usable(x: Tensor) -> bool:
    from importlib.util import find_spec
    if find_spec('triton') is None:
        return False
    return x.is_cuda or os.environ.get('TRITON_INTERPRET') == '1'


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f'act_impl must be one of {IMPLS}, got {impl!r}')
    return impl


def resolve_impl(impl: str, x: Tensor) -> str:
    """``'triton'`` or ``'torch'`` for this input (see the module docstring)."""
    check_impl(impl)
    if impl == 'auto':
        impl = os.environ.get(ENV_VAR, 'auto').lower()
        if impl not in IMPLS:
            raise ValueError(f'{ENV_VAR} must be one of {IMPLS}, got '
                             f'{os.environ[ENV_VAR]!r}; unset it for auto')
        if impl == 'auto':
            return 'triton' if x.is_cuda and _triton_usable(x) else 'torch'
    if impl == 'triton' and not _triton_usable(x):
        raise RuntimeError(
            f'act_impl=triton needs Triton and a CUDA tensor (got a '
            f'{x.device.type} tensor); use act_impl=torch here, or set '
            f'TRITON_INTERPRET=1 to run the kernel in the Triton interpreter')
    return impl


def series_act(x: Tensor, weight: Tensor, bias: Tensor, act_num: int,
               impl: str = 'auto') -> Tensor:
    """``relu → depthwise conv + bias`` with weight ``(C, 1, 2n+1, 2n+1)``."""
    if resolve_impl(impl, x) == 'torch' or x.numel() >= 2**31:
        return series_act_reference(x, weight, bias, act_num)
    return _SeriesAct.apply(x, weight, bias, act_num)


class _SeriesAct(torch.autograd.Function):
    """Triton forward; exact backward from PyTorch's conv gradient ops."""

    @staticmethod
    def forward(ctx, x, weight, bias, act_num):
        from ._triton_series_act import series_act_forward
        ctx.save_for_backward(x, weight)
        ctx.act_num = act_num
        return series_act_forward(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        p, groups = ctx.act_num, x.shape[1]
        grad = grad.to(x.dtype)
        w = weight.to(x.dtype)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.nn.grad.conv2d_input(x.shape, w, grad, padding=p,
                                            groups=groups) * (x > 0)
        if ctx.needs_input_grad[1]:
            gw = torch.nn.grad.conv2d_weight(F.relu(x), w.shape, grad,
                                             padding=p, groups=groups)
            gw = gw.to(weight.dtype)
        if ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3)).to(weight.dtype)
        return gx, gw, gb, None
