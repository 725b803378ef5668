"""Numerical checks shared by the tests and the tools that verify fusion."""
from typing import Iterable, Union

import torch
from torch import Tensor


def max_rel_error(reference: Union[Tensor, Iterable[Tensor]],
                  other: Union[Tensor, Iterable[Tensor]]) -> float:
    """max |other - reference| / max |reference|, in fp32; for sequences of
    tensors (e.g. multi-scale features) the largest over the pairs."""
    if isinstance(reference, Tensor):
        reference, other = [reference], [other]
    return max(((o.float() - r.float()).abs().max() /
                r.float().abs().max()).item()
               for r, o in zip(reference, other))


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial statistics and affine parameters, so that a
    fusion check exercises the BN folding (fresh BNs are the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
