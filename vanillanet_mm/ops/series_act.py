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

The Triton path is the operator ``torch.ops.vanillanet_mm.series_act``
(``torch.library.custom_op``: ``torch.compile`` keeps it as one opaque node,
CUDA graphs capture its launch once the autotuner has run for the shape's
bucket). It is differentiable: its backward uses PyTorch's conv gradient ops,
so a fused model can still be fine-tuned. On CUDA it launches on
``x.device``; if the kernel fails to compile or launch there, the call (and
every later one in the process) falls back to the PyTorch ops with one
warning naming the cause. An image spanning 2**31 elements or more (the
kernel's per-element offsets are int32) also takes the PyTorch ops.

The operator needs ``torch.library.custom_op`` (torch >= 2.4): on an older
torch the activation always runs as the PyTorch ops (``'auto'`` logs this
once for CUDA tensors; ``'triton'`` is refused with the reason).
"""
import contextlib
import os
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils.compat import HAS_CUSTOM_OP, feature_off
from ..utils.errors import ConfigError

IMPLS = ('auto', 'triton', 'torch')
ENV_VAR = 'VANILLANET_ACT_IMPL'
NO_CUSTOM_OP = ('the Triton series activation is registered with '
                'torch.library.custom_op (torch >= 2.4); the PyTorch ops run '
                'instead')


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
        raise ConfigError(f'act_impl must be one of {IMPLS}, got {impl!r}')
    return impl


def resolve_impl(impl: str, x: Tensor) -> str:
    """``'triton'`` or ``'torch'`` for this input (see the module doc)."""
    check_impl(impl)
    if impl == 'auto':
        impl = os.environ.get(ENV_VAR, 'auto').lower()
        if impl not in IMPLS:
            raise ConfigError(f'{ENV_VAR} must be one of {IMPLS}, got '
                             f'{os.environ[ENV_VAR]!r}; unset it for auto')
        if impl == 'auto':
            if x.is_cuda and not HAS_CUSTOM_OP:
                feature_off('the Triton series activation', NO_CUSTOM_OP)
            return ('triton' if x.is_cuda and HAS_CUSTOM_OP
                    and _triton_usable(x) else 'torch')
    if impl == 'triton' and not HAS_CUSTOM_OP:
        raise ConfigError(f'act_impl=triton needs torch >= 2.4, this is '
                          f'torch {torch.__version__}: use act_impl=torch '
                          f'(or auto)')
    if impl == 'triton' and not _triton_usable(x):
        raise ConfigError(
            f'act_impl=triton needs Triton and a CUDA tensor (got a '
            f'{x.device.type} tensor); use act_impl=torch here, or set '
            f'TRITON_INTERPRET=1 to run the kernel in the Triton interpreter')
    return impl


def series_act(x: Tensor, weight: Tensor, bias: Tensor, act_num: int,
               impl: str = 'auto') -> Tensor:
    """``relu → depthwise conv + bias`` with weight ``(C, 1, 2n+1, 2n+1)``."""
    if resolve_impl(impl, x) == 'torch':
        return series_act_reference(x, weight, bias, act_num)
    if weight.shape[-1] != 2 * act_num + 1:
        raise ValueError(f'act_num {act_num} needs a {2 * act_num + 1}-wide '
                         f'kernel, got weight {tuple(weight.shape)}')
    return torch.ops.vanillanet_mm.series_act(x, weight, bias)


# None: fall back on errors for CUDA tensors only (the interpreter's errors
# are bugs the tests must see); tests set True to exercise the fallback.
FALLBACK_ON_ERROR = None
_fallback_cause = None


def fallback_cause():
    """Why the Triton path was given up in this process (None: it was not)."""
    return _fallback_cause


def _offsets_fit_int32(t: Tensor) -> bool:
    """The kernel's per-element offsets within one image are int32."""
    return sum((d - 1) * abs(s) for d, s in zip(t.shape[1:], t.stride()[1:])
               ) < 2**31


def _series_act_op(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    global _fallback_cause
    p = weight.shape[-1] // 2
    if _fallback_cause is not None or not _offsets_fit_int32(x):
        return series_act_reference(x, weight, bias, p)
    from ._triton_series_act import series_act_forward
    guard = (torch.cuda.device(x.device) if x.device.type == 'cuda'
             else contextlib.nullcontext())
    try:
        with guard:
            return series_act_forward(x, weight, bias)
    except Exception as e:  # compile or launch failure
        fallback = (x.is_cuda if FALLBACK_ON_ERROR is None
                    else FALLBACK_ON_ERROR)
        if not fallback or isinstance(e, ValueError):
            raise
        _fallback_cause = f'{type(e).__name__}: {e}'.splitlines()[0][:300]
        warnings.warn(f'series_act: the Triton kernel failed ('
                      f'{_fallback_cause}); using the PyTorch ops from now '
                      f'on', RuntimeWarning, stacklevel=2)
        return series_act_reference(x, weight, bias, p)


def _series_act_fake(x, weight, bias):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.bias_dtype = bias.dtype


def _backward(ctx, grad):
    """Exact gradients from PyTorch's conv gradient ops."""
    x, weight = ctx.saved_tensors
    p, groups = weight.shape[-1] // 2, x.shape[1]
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
        gb = grad.sum((0, 2, 3)).to(ctx.bias_dtype)
    return gx, gw, gb


if HAS_CUSTOM_OP:
    _series_act_op = torch.library.custom_op(
        'vanillanet_mm::series_act', mutates_args=())(_series_act_op)
    _series_act_op.register_fake(_series_act_fake)
    _series_act_op.register_autograd(_backward,
                                     setup_context=_setup_context)
