"""Shared fixtures. No __init__.py here: mmseg installs a top-level `tests`."""
import os

import pytest
import torch

# Without a GPU, Triton kernels run in Triton's interpreter. It must be chosen
# before triton is first imported (vanillanet_mm's imports pull it in).
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')

from vanillanet_mm.models import VanillaNet


def small_arch(name: str, divisor: int = 64) -> dict:
    """An official arch, widths divided (same depth, strides, pools)."""
    arch = dict(VanillaNet.arch_settings[name])
    arch['dims'] = [max(d // divisor, 4) for d in arch['dims']]
    return arch


@pytest.fixture
def tiny_arch():
    return dict(dims=[8, 8, 16, 32, 32], strides=[1, 2, 2, 1])
