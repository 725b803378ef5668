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
    """An official arch with its widths divided (same depth, strides, pools)."""
    arch = dict(VanillaNet.arch_settings[name])
    arch['dims'] = [max(d // divisor, 4) for d in arch['dims']]
    return arch


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


@pytest.fixture
def tiny_arch():
    return dict(dims=[8, 8, 16, 32, 32], strides=[1, 2, 2, 1])
