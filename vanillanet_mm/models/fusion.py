"""Fusion algebra for VanillaNet's deploy form, in one place.

Every function returns new, contiguous tensors computed in float64 and cast
back to the input dtype, so fused weights are exact to float32 rounding and
fast for cuDNN (the official code leaves transposed, non-contiguous views).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

Pair = Tuple[Tensor, Tensor]


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> Pair:
    """BN in eval mode as ``y = scale * x + shift`` (per channel, float64)."""
    std = (bn.running_var.double() + bn.eps).sqrt()
    gamma = (bn.weight.double() if bn.weight is not None else
             torch.ones_like(std))
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean.double() * scale


def fuse_conv_bn(weight: Tensor, bias: Optional[Tensor],
                 bn: nn.modules.batchnorm._BatchNorm) -> Pair:
    """Fold an eval-mode BN into the conv before it: BN(conv(x)) = conv'(x)."""
    scale, shift = _bn_scale_shift(bn)
    w = weight.double() * scale.view(-1, 1, 1, 1)
    b = shift if bias is None else shift + bias.double() * scale
    return (w.to(weight.dtype).contiguous(), b.to(weight.dtype).contiguous())


def merge_pointwise(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Pair:
    """Compose conv2 (1x1) after conv1 (any kernel) into one conv.

    ``w1``: (C_mid, C_in, kh, kw), ``w2``: (C_out, C_mid, 1, 1). Exact also
    when
    conv1 pads, because the 1x1 conv acts pointwise on conv1's output.
    """
    m2 = w2.double().flatten(1)  # (C_out, C_mid)
    w = torch.einsum('om,mikl->oikl', m2, w1.double())
    b = m2 @ b1.double() + b2.double()
    return w.to(w1.dtype).contiguous(), b.to(w1.dtype).contiguous()

