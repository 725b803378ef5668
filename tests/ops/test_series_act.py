"""The fused series-activation kernel against the PyTorch definition.

Without a GPU the Triton kernel runs in the Triton interpreter
(TRITON_INTERPRET=1, set by conftest.py before triton is imported); on a CUDA
host the same tests run the compiled kernel (nothing here assumes the
interpreter), plus test_every_config_at_vanillanet13_sizes.
"""
import importlib
import os
import subprocess
import sys
import warnings

import pytest
import torch

from vanillanet_mm.models import VanillaNet
from vanillanet_mm.ops import (
    ENV_VAR,
    resolve_impl,
    series_act,
    series_act_reference,
)
from vanillanet_mm.utils.compat import HAS_CUSTOM_OP
from vanillanet_mm.utils.errors import ConfigError
from vanillanet_mm.utils.numerics import max_rel_error

# the module (the package re-exports its function under the same name)
series_act_mod = importlib.import_module('vanillanet_mm.ops.series_act')

pytest.importorskip('triton')
# the operator needs torch.library.custom_op (torch >= 2.4); on an older
# torch tests/utils/test_compat.py checks that the PyTorch ops run instead
pytestmark = pytest.mark.skipif(not HAS_CUSTOM_OP,
                                reason='torch < 2.4: no Triton operator')
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
gpu_only = pytest.mark.skipif(not torch.cuda.is_available(),
                              reason='needs a CUDA GPU')


@pytest.fixture(autouse=True)
def exact_fp32_references():
    """fp32 references at 1e-5 need cuDNN without TF32; and no test here may
    silently pass through the PyTorch fallback."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='series_act: the Triton')
        yield
    torch.backends.cudnn.allow_tf32 = old
    assert series_act_mod.fallback_cause() is None


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
    assert max_rel_error(ref, out) <= 1e-5


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
    assert max_rel_error(ref, out) <= TOL[dtype]


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16],
                         ids=['fp32', 'bf16'])
@pytest.mark.parametrize('channels_last', [False, True])
def test_nan_propagates_like_pytorch(dtype, channels_last):
    """ReLU(NaN) is NaN in PyTorch; a kernel that turned it into 0 (the
    GPU's default max) would hide a diverging model's NaNs. NaNs inside, at
    a corner (read again through the clamped padding) and at an edge."""
    x, weight, bias = _inputs(1, 5, 13, 14, 4, dtype, channels_last)
    x[0, 1, 6, 7] = x[0, 2, 0, 0] = x[0, 4, 12, 5] = float('nan')
    out = series_act(x, weight, bias, 4, impl='triton')
    ref = series_act_reference(x.float(), weight, bias, 4)
    assert ref.isnan().sum() > 0
    assert torch.equal(out.isnan(), ref.isnan())
    ok = ~ref.isnan()
    assert max_rel_error(ref[ok], out[ok]) <= TOL[dtype]


def test_non_contiguous_input():
    x, weight, bias = _inputs(1, 12, 9, 10, 2)
    x = x[:, ::2]  # every other channel: strided, neither layout
    weight, bias = weight[::2], bias[::2]
    out = series_act(x, weight, bias, 2, impl='triton')
    ref = series_act_reference(x, weight, bias, 2)
    assert max_rel_error(ref, out) <= 1e-5


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
    monkeypatch.setenv('TRITON_INTERPRET', '1')  # CPU tensor: interpreter
    assert resolve_impl('auto', x) == 'triton'
    assert resolve_impl('torch', x) == 'torch'  # an explicit choice wins
    monkeypatch.setenv(ENV_VAR, 'cuda')
    with pytest.raises(ValueError, match=ENV_VAR):
        resolve_impl('auto', x)
    with pytest.raises(ValueError, match='act_impl must be one of'):
        resolve_impl('fast', x)
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match='needs Triton and a CUDA'):
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
        assert max_rel_error(r, o) <= 1e-5


def test_backbone_rejects_unknown_act_impl(tiny_arch):
    with pytest.raises(ValueError, match=r"act_impl must be one of \('auto'"):
        VanillaNet(tiny_arch, act_impl='cudnn')


def test_registered_op_passes_opcheck():
    """Schema, fake (meta) kernel, autograd registration and AOT dispatch:
    what torch.compile and CUDA graph capture rely on."""
    x, weight, bias = _inputs(1, 3, 5, 6, 1)
    torch.library.opcheck(torch.ops.vanillanet_mm.series_act,
                          (x, weight, bias))
    torch.library.opcheck(torch.ops.vanillanet_mm.series_act,
                          (x.requires_grad_(), weight.requires_grad_(), bias))


def test_torch_compile_keeps_the_kernel_in_one_graph():
    x, weight, bias = _inputs(1, 4, 6, 7, 2)

    def f(x, weight, bias):
        return series_act(x, weight, bias, 2, impl='triton') * 2

    out = torch.compile(f, backend='aot_eager', fullgraph=True)(x, weight,
                                                               bias)
    ref = series_act_reference(x, weight, bias, 2) * 2
    assert max_rel_error(ref, out) <= 1e-5


def test_launch_failure_falls_back_with_one_warning(monkeypatch):
    from vanillanet_mm.ops import _triton_series_act

    def broken(*args, **kwargs):
        raise RuntimeError('PTX JIT compilation failed\nsecond line')

    monkeypatch.setattr(_triton_series_act, 'series_act_forward', broken)
    monkeypatch.setattr(series_act_mod, 'FALLBACK_ON_ERROR', True)
    monkeypatch.setattr(series_act_mod, '_fallback_cause', None)
    x, weight, bias = _inputs(1, 3, 5, 6, 1)
    ref = series_act_reference(x, weight, bias, 1)
    with pytest.warns(RuntimeWarning, match='PTX JIT compilation failed'):
        out = series_act(x, weight, bias, 1, impl='triton')
    assert torch.equal(out, ref)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # warned once: later calls are quiet
        assert torch.equal(series_act(x, weight, bias, 1, impl='triton'), ref)
    assert 'PTX JIT' in series_act_mod.fallback_cause()
    monkeypatch.setattr(series_act_mod, '_fallback_cause', None)


def test_autotune_key_is_bucketed():
    from vanillanet_mm.ops._triton_series_act import size_key
    # COCO-like padded sizes at stride 8 share one bucket ...
    assert size_key(100, 168) == size_key(96, 136) == size_key(128, 256)
    # ... and differ from a clearly different scale
    assert size_key(100, 168) != size_key(50, 84)


@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'cl'])
def test_every_config_on_partial_tiles(channels_last):
    """Each autotune candidate (the tiles a GPU runs; the other tests use one
    small tile) on an input that no tile divides: partial row tiles, column
    strips and channel blocks, image borders on every side; K = 9 (three
    kernel columns per trip, bf16 too) and K = 7 (one per trip)."""
    from vanillanet_mm.ops._triton_series_act import (
        NCHW_CONFIGS,
        NHWC_CONFIGS,
        series_act_forward,
    )
    for cfg in NHWC_CONFIGS if channels_last else NCHW_CONFIGS:
        config = dict(cfg.kwargs, num_warps=cfg.num_warps)
        for act_num, dtype in [(4, torch.float32), (4, torch.bfloat16),
                               (3, torch.float32)]:
            x, weight, bias = _inputs(1, 19, 14, 37, act_num, dtype,
                                      channels_last)
            ref = series_act_reference(x.float(), weight, bias, act_num)
            out = series_act_forward(x, weight, bias, config=config)
            assert max_rel_error(ref, out) <= TOL[dtype], (cfg, act_num)


@gpu_only
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16,
                                   torch.float16], ids=['fp32', 'bf16',
                                                        'fp16'])
@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'cl'])
def test_every_config_at_vanillanet13_sizes(dtype, channels_last):
    """Each autotune candidate, compiled for this GPU, at the activation
    shapes of VanillaNet-13 at 800x1344 (act_num 4), against cuDNN."""
    from vanillanet_mm.ops._triton_series_act import (
        NCHW_CONFIGS,
        NHWC_CONFIGS,
        series_act_forward,
    )
    configs = NHWC_CONFIGS if channels_last else NCHW_CONFIGS
    for c, h, w in [(512, 200, 336), (1024, 100, 168), (2048, 50, 84),
                    (4096, 25, 42)]:
        x, weight, bias = _inputs(1, c, h, w, 4, dtype, channels_last)
        ref = series_act_reference(x.float(), weight, bias, 4)
        for cfg in configs:
            out = series_act_forward(x, weight, bias, config=dict(
                cfg.kwargs, num_warps=cfg.num_warps))
            err = max_rel_error(ref, out)
            assert err <= TOL[dtype], (c, h, w, cfg, err)


@gpu_only
def test_launches_on_the_tensors_device():
    if torch.cuda.device_count() < 2:
        pytest.skip('needs two GPUs')
    x, weight, bias = (t.to('cuda:1') for t in _inputs(1, 8, 9, 10, 2))
    with torch.cuda.device(0):
        out = series_act(x, weight, bias, 2, impl='triton')
    assert out.device == x.device
    assert max_rel_error(series_act_reference(x, weight, bias, 2), out) <= 1e-5



_COMPILE_SM90 = """
import sys
from triton import compile as triton_compile
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from vanillanet_mm.ops import _triton_series_act as kern
channels_last = sys.argv[1] == 'cl'
cfg = (kern.NHWC_CONFIGS if channels_last else kern.NCHW_CONFIGS)[0]
c, h, w = 2048, 50, 84
strides = (c * h * w, 1, w * c, c) if channels_last else (c * h * w, h * w,
                                                          w, 1)
ints = dict(C=c, H=h, W=w, size_key=kern.size_key(h, w),
            **dict(zip(('sxn', 'sxc', 'sxh', 'sxw'), strides)),
            **dict(zip(('syn', 'syc', 'syh', 'syw'), strides)))
const = dict(K=9, **cfg.kwargs)
const.update({n: 1 for n, v in ints.items() if v == 1})
jit = kern._series_act_kernel
names = [p.name for p in jit.params]
sig = {n: ('*bf16' if n in ('x_ptr', 'y_ptr') else '*fp32')
       if n.endswith('_ptr') else 'constexpr' if n in const else 'i32'
       for n in names}
src = ASTSource(jit, sig, {(names.index(n), ): v for n, v in const.items()})
k = triton_compile(src, target=GPUTarget('cuda', 90, 32),
                   options=dict(num_warps=cfg.num_warps))
assert k.asm['cubin'], 'no cubin'
print('compiled', k.metadata.name)
"""


@pytest.mark.parametrize('layout', ['nchw', 'cl'])
def test_kernel_compiles_for_sm90(layout):
    """The interpreter accepts code the compiler rejects (it did: a constexpr
    assigned inside static_range). Compile the first autotune config of each
    layout (bf16, VanillaNet-13's 2048x50x84) for sm_90 with Triton's own
    compiler and bundled ptxas: no GPU needed; a subprocess because the
    interpreter setting is global to this one."""
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    root = os.path.dirname(os.path.dirname(os.path.abspath(
        series_act_mod.__file__)))
    env['PYTHONPATH'] = os.pathsep.join(
        [os.path.dirname(root), env.get('PYTHONPATH', '')])
    proc = subprocess.run([sys.executable, '-c', _COMPILE_SM90, layout],
                          env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'compiled _series_act_kernel' in proc.stdout
