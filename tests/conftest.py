"""Shared fixtures. No __init__.py here: mmseg installs a top-level `tests`."""
import os

import pytest
import torch

# Without a GPU, Triton kernels run in Triton's interpreter. It must be chosen
# before triton is first imported (vanillanet_mm's imports pull it in).
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')

from vanillanet_mm.models import VanillaNet

# pytest-xdist (`make test` runs `-n auto`): the cores are shared out between
# the workers, in each worker's torch and in the processes its tests start.
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
if _WORKERS > 1:
    _threads = max(1, (os.cpu_count() or 1) // _WORKERS)
    torch.set_num_threads(_threads)
    os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = str(
        _threads)


def small_arch(name: str, divisor: int = 64) -> dict:
    """An official arch, widths divided (same depth, strides, pools)."""
    arch = dict(VanillaNet.arch_settings[name])
    arch['dims'] = [max(d // divisor, 4) for d in arch['dims']]
    return arch


@pytest.fixture
def tiny_arch():
    return dict(dims=[8, 8, 16, 32, 32], strides=[1, 2, 2, 1])
