"""Triton kernel of the deploy-form series activation (see series_act.py).

One program computes a BLOCK_H x BLOCK_W x BLOCK_C output tile of one image:
for each of the K² taps it loads the shifted input tile (zero outside the
image), applies ReLU and accumulates ``tap weight * value`` in fp32; the
overlapping loads of neighbouring taps hit the L1/L2 caches. Strides are
arguments, so one kernel serves NCHW and channels_last; the tile shape differs
(wide along W for NCHW, wide along C for channels_last, where C is contiguous).
"""
import triton
import triton.language as tl
from torch import Tensor, empty_like


@triton.jit
def _series_act_kernel(x_ptr, w_ptr, b_ptr, y_ptr, C, H, W,
                       sxn, sxc, sxh, sxw, syn, syc, syh, syw,
                       K: tl.constexpr, BLOCK_H: tl.constexpr,
                       BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    pid_nh = tl.program_id(0)
    h_tiles = tl.cdiv(H, BLOCK_H)
    n = pid_nh // h_tiles
    hs = (pid_nh % h_tiles) * BLOCK_H + tl.arange(0, BLOCK_H)
    ws = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    cs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < C
    x_base = x_ptr + n * sxn + cs[None, None, :] * sxc
    acc = tl.zeros([BLOCK_H, BLOCK_W, BLOCK_C], dtype=tl.float32)
    for kh in tl.static_range(K):
        ih = hs + (kh - K // 2)
        h_ok = (ih >= 0) & (ih < H)
        for kw in tl.static_range(K):
            iw = ws + (kw - K // 2)
            ok = (h_ok[:, None, None] & ((iw >= 0) & (iw < W))[None, :, None]
                  & c_ok[None, None, :])
            v = tl.load(x_base + ih[:, None, None] * sxh
                        + iw[None, :, None] * sxw, mask=ok, other=0.)
            tap = tl.load(w_ptr + cs * (K * K) + (kh * K + kw), mask=c_ok,
                          other=0.)
            acc += (tl.maximum(v.to(tl.float32), 0.)
                    * tap.to(tl.float32)[None, None, :])
    acc += tl.load(b_ptr + cs, mask=c_ok, other=0.).to(tl.float32)[None,
                                                                   None, :]
    ok = ((hs < H)[:, None, None] & (ws < W)[None, :, None]
          & c_ok[None, None, :])
    tl.store(y_ptr + n * syn + cs[None, None, :] * syc
             + hs[:, None, None] * syh + ws[None, :, None] * syw,
             acc.to(y_ptr.dtype.element_ty), mask=ok)


def _cfg(bh, bw, bc, warps):
    return triton.Config(dict(BLOCK_H=bh, BLOCK_W=bw, BLOCK_C=bc),
                         num_warps=warps)


# Tile candidates, benchmarked once per (C, H, W, dtype) on the GPU.
_NCHW_CONFIGS = [_cfg(8, 64, 1, 4), _cfg(16, 32, 1, 4), _cfg(4, 128, 1, 4),
                 _cfg(8, 32, 2, 4)]
_NHWC_CONFIGS = [_cfg(2, 8, 64, 4), _cfg(1, 16, 64, 4), _cfg(4, 8, 32, 4),
                 _cfg(2, 8, 128, 8)]
_KEY = ['C', 'H', 'W', 'K']
_tuned = {False: triton.autotune(_NCHW_CONFIGS, key=_KEY)(_series_act_kernel),
          True: triton.autotune(_NHWC_CONFIGS, key=_KEY)(_series_act_kernel)}
_INTERPRETER_CFG = {False: dict(BLOCK_H=4, BLOCK_W=8, BLOCK_C=4),
                    True: dict(BLOCK_H=4, BLOCK_W=4, BLOCK_C=8)}


def series_act_forward(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``relu → depthwise conv + bias`` in one pass; same layout as ``x``."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    if weight.shape != (c, 1, k, k) or k % 2 == 0 or bias.shape != (c, ):
        raise ValueError(f'series activation expects weight (C, 1, k, k) '
                         f'with odd k and bias (C,), C={c}; got '
                         f'{tuple(weight.shape)} and {tuple(bias.shape)}')
    channels_last = x.stride(1) == 1 and c > 1
    y = empty_like(x)  # keeps x's memory format
    weight, bias = weight.contiguous(), bias.contiguous()

    def grid(meta):
        return (n * triton.cdiv(h, meta['BLOCK_H']),
                triton.cdiv(w, meta['BLOCK_W']),
                triton.cdiv(c, meta['BLOCK_C']))

    args = (x, weight, bias, y, c, h, w, *x.stride(), *y.stride())
    if x.is_cuda:
        _tuned[channels_last][grid](*args, K=k)
    else:  # TRITON_INTERPRET=1: one small tile, no autotuning
        _series_act_kernel[grid](*args, K=k,
                                 **_INTERPRETER_CFG[channels_last])
    return y
