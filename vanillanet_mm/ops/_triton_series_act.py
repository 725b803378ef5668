"""Triton kernel of the deploy-form series activation (see series_act.py).

Register-blocked in both directions. A program owns BLOCK_H output rows x
BLOCK_W columns x BLOCK_C channels of one image; each thread owns one channel
of a strip of TW adjacent columns over all BLOCK_H rows, i.e. BLOCK_H * TW
fp32 accumulators (a tuple: every output is its own register), initialised
with the bias. A runtime loop runs over the K kernel columns G at a time
(G = 3 when it divides K, else K up to 7, else 1); per trip the thread loads
the K * G taps it needs (weight (C, K²) as given: one base per thread,
constant offsets), then, unrolled, walks the BLOCK_H + K - 1 input rows of
tile + halo: each row contributes TW + G - 1 input columns, each loaded,
zero-padded, ReLU'd and widened once and multiplied into up to K * G outputs
of up to K output rows, so the multiply-adds are exactly K² per output and a
loaded value serves up to K * G of them (K for the old row-only blocking).

Padding without masks: column and channel indices are clamped into the image
(every load is in bounds) and a clamped column is zeroed by the same
instruction that widens bf16 (bits * 65536, or * 0 outside the image; other
dtypes: min(relu(v), 0 or inf)); a halo row outside the image is skipped by a
uniform branch. Strides are arguments, so one kernel serves NCHW and
channels_last (tile configs differ: threads along W for NCHW, along C for
channels_last).

Offsets: image and row bases are int64 scalars; per-element offsets (channel
and column) are int32, which the caller guarantees by checking that one image
spans fewer than 2**31 elements (else it uses PyTorch).
"""
import triton
import triton.language as tl
from torch import Tensor, empty_like

# Sizes and strides: specialised when 1 (a unit stride becomes a constant),
# not on 16-divisibility (loads and stores are per element here, so it buys
# nothing, and VanillaNet's shapes would compile ~3 variants per tile).
_INT_ARGS = ['C', 'H', 'W', 'sxn', 'sxc', 'sxh', 'sxw', 'syn', 'syc', 'syh',
             'syw', 'size_key']


@triton.jit(do_not_specialize_on_alignment=_INT_ARGS)
def _series_act_kernel(x_ptr, w_ptr, b_ptr, y_ptr, C, H, W,
                       sxn, sxc, sxh, sxw, syn, syc, syh, syw, size_key,
                       K: tl.constexpr, BLOCK_H: tl.constexpr,
                       BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
                       TW: tl.constexpr):
    """size_key only keys the autotuner (bucketed H, W). The column loop
    stays inline (no helper functions), so its machine code maps back to
    the loop's source lines."""
    P: tl.constexpr = K // 2
    # kernel columns per trip: 3 where 3 divides K (act_num 1, 4), else all
    # K up to 7 (act_num 2, 3: K * K taps still fit), else 1
    G: tl.constexpr = 3 if K % 3 == 0 else (K if K <= 7 else 1)
    U: tl.constexpr = TW + G - 1  # input columns per row and trip
    STRIPS: tl.constexpr = BLOCK_W // TW
    BF16: tl.constexpr = x_ptr.dtype.element_ty == tl.bfloat16
    # ReLU(NaN) = NaN as in PyTorch (the GPU's plain max would return 0 and
    # hide a NaN from the user); a NaN in a clamped column reaches only
    # outputs whose window holds that border column anyway
    NAN: tl.constexpr = tl.PropagateNan.ALL
    pid_nh = tl.program_id(0)
    h_tiles = tl.cdiv(H, BLOCK_H)
    n = pid_nh // h_tiles
    h0 = (pid_nh % h_tiles) * BLOCK_H
    w0 = (tl.program_id(1) * STRIPS + tl.arange(0, STRIPS)) * TW
    cs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    # channels past C compute channel C - 1 (in bounds) and are not stored
    cc = tl.minimum(cs, C - 1)[None, :] + 0 * w0[:, None]
    acc = (tl.load(b_ptr + cc).to(tl.float32), ) * (BLOCK_H * TW)
    x_img = x_ptr + n.to(tl.int64) * sxn
    x_c = cc * sxc
    w_chan = w_ptr + cc * (K * K)
    for kw0 in range(0, K, G):
        taps = ()
        for kh in tl.static_range(K):
            for j in tl.static_range(G):
                taps = taps + (tl.load(w_chan + (kh * K + j) + kw0)
                               .to(tl.float32), )
        offs = ()
        pads = ()  # per input column: what zero-pads it (see module doc)
        for u in tl.static_range(U):
            iw = w0[:, None] + (kw0 - P + u)
            inside = (iw >= 0) & (iw < W)
            offs = offs + (x_c + tl.minimum(tl.maximum(iw, 0), W - 1) * sxw,
                           )
            if BF16:
                pads = pads + (tl.where(inside, 65536, 0).to(tl.uint32), )
            else:
                pads = pads + (tl.where(inside, float('inf'), 0.), )
        for r in tl.static_range(BLOCK_H + K - 1):
            ih = h0 + (r - P)
            if (ih >= 0) & (ih < H):
                x_row = x_img + ih.to(tl.int64) * sxh
                vals = ()
                for u in tl.static_range(U):
                    if BF16:  # bf16 bits << 16 are the fp32 value
                        raw = tl.load((x_row + offs[u]).to(
                            tl.pointer_type(tl.uint16)))
                        v = (raw.to(tl.uint32) * pads[u]).to(tl.float32,
                                                             bitcast=True)
                        v = tl.maximum(v, 0., propagate_nan=NAN)
                    else:
                        v = tl.load(x_row + offs[u]).to(tl.float32)
                        v = tl.minimum(tl.maximum(v, 0., propagate_nan=NAN),
                                       pads[u], propagate_nan=NAN)
                    vals = vals + (v, )
                for kh in tl.static_range(K):  # into output row r - kh
                    if r - kh >= 0 and r - kh < BLOCK_H:
                        for t in tl.static_range(TW):
                            for j in tl.static_range(G):
                                acc = (acc[:(r - kh) * TW + t]
                                       + (acc[(r - kh) * TW + t]
                                          + vals[t + j] * taps[kh * G + j], )
                                       + acc[(r - kh) * TW + t + 1:])
    y_img = y_ptr + n.to(tl.int64) * syn
    c_ok = (cs < C)[None, :]
    for t in tl.static_range(TW):
        ow = w0[:, None] + t
        y_cw = y_img + cs[None, :] * syc + ow * syw
        ok = (ow < W) & c_ok
        for h in tl.static_range(BLOCK_H):
            oh = h0 + h
            # the row test as a tile, not a scalar: Triton 3.9's interpreter
            # turns (tile & scalar) masks into int32 and refuses them
            tl.store(y_cw + oh.to(tl.int64) * syh,
                     acc[h * TW + t].to(y_ptr.dtype.element_ty),
                     mask=ok & (ow * 0 + oh < H))


def _cfg(bh, bw, bc, tw, warps):
    return triton.Config(dict(BLOCK_H=bh, BLOCK_W=bw, BLOCK_C=bc, TW=tw),
                         num_warps=warps)


# Tile candidates, benchmarked once per (C, K, size bucket, dtype) on the GPU.
# Each thread: one channel x TW = 4 columns x BLOCK_H rows. 12 rows fit 128
# registers (8 rows: ~96, twice the warps per SM). NCHW: threads along W, the
# widths suit W = 42 ... 336 of VanillaNet-13 at 800x1344.
NCHW_CONFIGS = [_cfg(12, 32, 16, 4, 4), _cfg(12, 64, 8, 4, 4),
                _cfg(12, 128, 4, 4, 4), _cfg(8, 32, 16, 4, 4)]
# channels_last: threads along C (a warp reads 32 adjacent channels).
NHWC_CONFIGS = [_cfg(12, 8, 64, 4, 4), _cfg(12, 16, 32, 4, 4),
                _cfg(12, 8, 32, 4, 2), _cfg(8, 8, 64, 4, 4)]
_KEY = ['C', 'K', 'size_key']
_tuned = {False: triton.autotune(NCHW_CONFIGS, key=_KEY)(_series_act_kernel),
          True: triton.autotune(NHWC_CONFIGS, key=_KEY)(_series_act_kernel)}
# the interpreter's cost is per program and per statement: few, wide tiles
_INTERPRETER_CFG = dict(BLOCK_H=4, BLOCK_W=16, BLOCK_C=16, TW=4)


def size_key(h: int, w: int) -> int:
    """Autotuning bucket of an (H, W): both rounded up to powers of two, so
    COCO's many padded sizes share a handful of tunings."""
    return ((h - 1).bit_length() << 8) | (w - 1).bit_length()


def is_channels_last(x: Tensor) -> bool:
    return x.stride(1) == 1 and x.shape[1] > 1


def series_act_forward(x: Tensor, weight: Tensor, bias: Tensor,
                       config: dict = None) -> Tensor:
    """``relu → depthwise conv + bias`` in one pass; same layout as ``x``.

    ``config`` (BLOCK_H/W/C, TW, num_warps) bypasses the autotuner (tests)."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    if weight.shape != (c, 1, k, k) or k % 2 == 0 or bias.shape != (c, ):
        raise ValueError(f'series activation expects weight (C, 1, k, k) '
                         f'with odd k and bias (C,), C={c}; got '
                         f'{tuple(weight.shape)} and {tuple(bias.shape)}')
    channels_last = is_channels_last(x)
    y = empty_like(x)  # keeps x's memory format
    weight = weight.reshape(c, k * k).contiguous()  # (C, K²): a view
    bias = bias.contiguous()

    def grid(meta):
        return (n * triton.cdiv(h, meta['BLOCK_H']),
                triton.cdiv(w, meta['BLOCK_W']),
                triton.cdiv(c, meta['BLOCK_C']))

    args = (x, weight, bias, y, c, h, w, *x.stride(), *y.stride(),
            size_key(h, w))
    const = dict(K=k)
    if config is not None:
        _series_act_kernel[grid](*args, **const, **config)
    elif x.is_cuda:
        _tuned[channels_last][grid](*args, **const)
    else:  # TRITON_INTERPRET=1: one small tile, no autotuning
        _series_act_kernel[grid](*args, **const, **_INTERPRETER_CFG)
    return y
