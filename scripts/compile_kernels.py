"""Compile the series-activation kernel's autotune tiles for one (layout,
dtype, K) by launching each once on a tiny tensor: fills Triton's on-disk
cache, so that scripts/gpu_check.sh can compile its ~100 variants in parallel
processes first (one process compiles serially) and its tests and benchmarks
then find them cached. The tiny shape has no size or stride equal to 1 other
than the unit stride of the layout, so it compiles the same specialisation as
VanillaNet's real shapes (sizes are not specialised on alignment).

    python scripts/compile_kernels.py {nchw|cl} {fp32|fp16|bf16|fp64} K
"""
import sys

import torch

from vanillanet_mm.ops._triton_series_act import (
    NCHW_CONFIGS,
    NHWC_CONFIGS,
    series_act_forward,
)

DTYPES = dict(fp32=torch.float32, fp16=torch.float16, bf16=torch.bfloat16,
              fp64=torch.float64)


def main(layout, dtype, k):
    device = 'cuda' if torch.cuda.is_available() else 'cpu'  # cpu: interp.
    x = torch.randn(2, 3, 5, 6, device=device, dtype=DTYPES[dtype])
    if layout == 'cl':
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(3, 1, k, k, device=device)
    bias = torch.randn(3, device=device)
    for cfg in NHWC_CONFIGS if layout == 'cl' else NCHW_CONFIGS:
        series_act_forward(x, weight, bias,
                           config=dict(cfg.kwargs, num_warps=cfg.num_warps))
    if device == 'cuda':
        torch.cuda.synchronize()
    print(f'compiled {layout} {dtype} K={k}')


if __name__ == '__main__':
    layout, dtype, k = sys.argv[1:4]
    main(layout, dtype, int(k))
