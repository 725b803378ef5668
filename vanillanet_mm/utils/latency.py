"""Wall-clock latency of a forward pass, synchronized around each call."""
import statistics
import time
from typing import Callable, Dict, List

import torch


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
