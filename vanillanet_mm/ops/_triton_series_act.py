"""Triton kernel of the deploy-form series activation (see series_act.py).

Register-blocked: one program computes BLOCK_H output rows x BLOCK_W columns
x BLOCK_C channels of one image, held as BLOCK_H fp32 accumulator tiles
``[BLOCK_W, BLOCK_C]`` (a tuple, so each row is its own set of registers). A
runtime loop runs over the K kernel columns ``kw``; for each it loads the K
tap vectors ``weight[kh, kw, c]`` (weight laid out (K², C): one contiguous
vector load per tap) and then, statically unrolled, walks the BLOCK_H + K - 1
input rows of the tile plus halo: each row segment (shifted by ``kw``) is
loaded once, ReLU'd once, converted to fp32 once and added into every output
row it reaches (up to K), so a loaded value serves K outputs and the multiply
adds are exactly K² per output. Zero padding is the load mask; the bias is the
accumulators' initial value. Strides are arguments, so one kernel serves NCHW
and channels_last (the tile configs differ: wide along W for NCHW, wide along
C for channels_last, where C is contiguous).

Offsets: the image and row bases are int64 scalars; per-element offsets
(channel and column) are int32, which the caller guarantees by checking that
one image spans fewer than 2**31 elements (else it uses PyTorch).
"""
import triton
import triton.language as tl
from torch import Tensor, empty_like


@triton.jit
def _series_act_kernel(x_ptr, w_ptr, b_ptr, y_ptr, C, H, W,
                       sxn, sxc, sxh, sxw, syn, syc, syh, syw, size_key,
                       K: tl.constexpr, BLOCK_H: tl.constexpr,
                       BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
                       BF16_BY_SHIFT: tl.constexpr):
    """size_key only keys the autotuner (bucketed H, W). BF16_BY_SHIFT (set
    for NCHW, where each value sits alone in a register): widen bf16 by a
    shift before an fp32 ReLU, where the compiler's packed bf16 ReLU costs
    two unpacking instructions per value; in channels_last values arrive in
    pairs and the packed ReLU pays. The code of the row loop stays inline
    (no helper functions) so that its machine code maps back to the loop."""
    P: tl.constexpr = K // 2
    pid_nh = tl.program_id(0)
    h_tiles = tl.cdiv(H, BLOCK_H)
    n = pid_nh // h_tiles
    h0 = (pid_nh % h_tiles) * BLOCK_H
    ws = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    cs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < C
    bias = tl.load(b_ptr + cs, mask=c_ok, other=0.).to(tl.float32)
    acc = (tl.broadcast_to(bias[None, :], [BLOCK_W, BLOCK_C]), ) * BLOCK_H
    x_img = x_ptr + n.to(tl.int64) * sxn
    x_c = cs[None, :] * sxc
    for kw in range(K):
        iw = ws + (kw - P)
        col_ok = ((iw >= 0) & (iw < W))[:, None] & c_ok[None, :]
        x_cw = x_c + iw[:, None] * sxw
        taps = ()
        for kh in tl.static_range(K):
            tap = tl.load(w_ptr + (kh * K + kw) * C + cs, mask=c_ok, other=0.)
            taps = taps + (tap.to(tl.float32)[None, :], )
        for r in tl.static_range(BLOCK_H + K - 1):
            ih = h0 + (r - P)
            ptr = x_img + ih.to(tl.int64) * sxh + x_cw
            ok = col_ok & (ih >= 0) & (ih < H)
            if BF16_BY_SHIFT and x_ptr.dtype.element_ty == tl.bfloat16:
                # bf16 bits are the high half of an fp32: widen by a shift
                raw = tl.load(ptr.to(tl.pointer_type(tl.uint16)), mask=ok,
                              other=0)
                v = (raw.to(tl.uint32) << 16).to(tl.float32, bitcast=True)
            else:
                v = tl.load(ptr, mask=ok, other=0.).to(tl.float32)
            v = tl.maximum(v, 0.)
            for kh in tl.static_range(K):
                if r - kh >= 0 and r - kh < BLOCK_H:  # output row r - kh
                    acc = (acc[:r - kh] + (acc[r - kh] + v * taps[kh], )
                           + acc[r - kh + 1:])
    y_img = y_ptr + n.to(tl.int64) * syn
    y_cw = cs[None, :] * syc + ws[:, None] * syw
    ok = (ws < W)[:, None] & c_ok[None, :]
    for h in tl.static_range(BLOCK_H):
        oh = h0 + h
        tl.store(y_img + oh.to(tl.int64) * syh + y_cw,
                 acc[h].to(y_ptr.dtype.element_ty), mask=ok & (oh < H))


def _cfg(bh, bw, bc, warps):
    return triton.Config(dict(BLOCK_H=bh, BLOCK_W=bw, BLOCK_C=bc),
                         num_warps=warps)


# Tile candidates, benchmarked once per (C, K, size bucket, dtype) on the GPU.
# NCHW: one value per thread and row, 24 rows (32 with the halo) fit 128
# registers; the widths suit W = 42 ... 336 of VanillaNet-13 at 800x1344.
NCHW_CONFIGS = [_cfg(24, 128, 1, 4), _cfg(24, 64, 2, 4), _cfg(24, 32, 4, 4),
                _cfg(16, 64, 2, 4)]
# channels_last: 4 contiguous channels per thread; the 12/16-row tiles issue
# fewer instructions per output but need ~220 registers (half the warps).
NHWC_CONFIGS = [_cfg(8, 8, 64, 4), _cfg(12, 8, 64, 4), _cfg(8, 4, 128, 4),
                _cfg(16, 4, 64, 2)]
_KEY = ['C', 'K', 'size_key']
_tuned = {False: triton.autotune(NCHW_CONFIGS, key=_KEY)(_series_act_kernel),
          True: triton.autotune(NHWC_CONFIGS, key=_KEY)(_series_act_kernel)}
# the interpreter's cost is per program and per statement: few, wide tiles
_INTERPRETER_CFG = dict(BLOCK_H=4, BLOCK_W=16, BLOCK_C=16)


def size_key(h: int, w: int) -> int:
    """Autotuning bucket of an (H, W): both rounded up to powers of two, so
    COCO's many padded sizes share a handful of tunings."""
    return ((h - 1).bit_length() << 8) | (w - 1).bit_length()


def is_channels_last(x: Tensor) -> bool:
    return x.stride(1) == 1 and x.shape[1] > 1


def series_act_forward(x: Tensor, weight: Tensor, bias: Tensor,
                       config: dict = None) -> Tensor:
    """``relu → depthwise conv + bias`` in one pass; same layout as ``x``.

    ``config`` (BLOCK_H/W/C, num_warps) bypasses the autotuner (tests)."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    if weight.shape != (c, 1, k, k) or k % 2 == 0 or bias.shape != (c, ):
        raise ValueError(f'series activation expects weight (C, 1, k, k) '
                         f'with odd k and bias (C,), C={c}; got '
                         f'{tuple(weight.shape)} and {tuple(bias.shape)}')
    channels_last = is_channels_last(x)
    y = empty_like(x)  # keeps x's memory format
    w_t = weight.reshape(c, k * k).t().contiguous()  # (K², C): tap vectors
    bias = bias.contiguous()

    def grid(meta):
        return (n * triton.cdiv(h, meta['BLOCK_H']),
                triton.cdiv(w, meta['BLOCK_W']),
                triton.cdiv(c, meta['BLOCK_C']))

    args = (x, w_t, bias, y, c, h, w, *x.stride(), *y.stride(),
            size_key(h, w))
    const = dict(K=k, BF16_BY_SHIFT=not channels_last)
    if config is not None:
        _series_act_kernel[grid](*args, **const, **config)
    elif x.is_cuda:
        _tuned[channels_last][grid](*args, **const)
    else:  # TRITON_INTERPRET=1: one small tile, no autotuning
        _series_act_kernel[grid](*args, **const, **_INTERPRETER_CFG)
    return y
