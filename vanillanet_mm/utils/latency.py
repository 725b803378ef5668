"""Timing primitives: wall-clock latency synchronized around each call,
CUDA-event GPU time, CUDA-graph capture, and the precisions the FPS tools
time in."""
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch

#: the ``--dtype`` choices of the FPS tools (tf32 and fp16: CUDA only)
DTYPES = ('fp32', 'tf32', 'fp16', 'bf16')


def set_precision(dtype: str) -> Optional[torch.dtype]:
    """TF32 on/off; returns the autocast dtype (None: plain fp32)."""
    torch.backends.cuda.matmul.allow_tf32 = dtype == 'tf32'
    torch.backends.cudnn.allow_tf32 = dtype == 'tf32'
    return {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(dtype)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_ms(fn: Callable[[], object], device='cpu', warmup: int = 2,
               iters: int = 5) -> List[float]:
    """Run ``fn`` ``warmup`` times, then time ``iters`` calls (ms each)."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summarize(times: List[float]) -> Dict[str, float]:
    """Median and 90th percentile (nearest rank) of a list of ms."""
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * len(ordered))) - 1)]
    return dict(median_ms=statistics.median(ordered), p90_ms=p90)


def gpu_ms(fn, iters):
    """GPU time per call from CUDA events (wall time includes launch
    overhead and host work; this is what the GPU spent between them)."""
    times = []
    for _ in range(iters):
        start, end = (torch.cuda.Event(enable_timing=True) for _ in 'se')
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return summarize(times)


def captured(run):
    """``run`` recorded once in a CUDA graph (after warming up on a side
    stream, as torch.cuda.graphs asks); returns (replay, static output)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    return graph.replay, out
