"""The fused VanillaNet backbone alone to ONNX (a whole detector/segmentor:
:mod:`.pipeline`).

Used by ``tools/deployment/export_backbone_onnx.py`` and
``tools/analysis_tools/int8_backbone.py``.
"""
import warnings
from typing import Callable, List, Optional, Sequence

import torch

from ..models import VanillaNet, load_pretrained
from ..utils.compat import onnx_export_kwargs
from ..utils.errors import ConfigError
from ..utils.fileio import atomic_path
from ..utils.numerics import randomize_bn


def fused_backbone(arch: str, act_num: int,
                   out_indices: Optional[Sequence[int]] = None,
                   checkpoint: Optional[str] = None, act_learn: float = 1.0,
                   random_bn_seed: Optional[int] = None) -> VanillaNet:
    """The fused backbone in eval mode, series activations by PyTorch ops
    (``act_impl='torch'``: what runs on a CPU and what is exported).

    ``checkpoint``: any layout the backbone loads (official, mmdet, ours);
    without it the weights are random, with λ = ``act_learn`` and, when
    ``random_bn_seed`` is given, BN layers with non-trivial statistics and
    affine parameters (:func:`randomize_bn`), so that the fused weights have
    a realistic per-channel spread. Fusion refuses λ ≠ 1 with one line.
    """
    model = VanillaNet(arch, act_num=act_num,
                       out_indices=(out_indices or
                                    VanillaNet.multiscale_out_indices(arch)),
                       act_learn=act_learn).eval()
    if checkpoint:
        load_pretrained(model, checkpoint)
    elif random_bn_seed is not None:
        randomize_bn(model, seed=random_bn_seed)
    model.switch_to_deploy()
    model.set_act_impl('torch')
    return model


def check_shape(model: VanillaNet, shape: Sequence[int]) -> None:
    """One line for an input smaller than the backbone's total stride."""
    if min(shape) < model.total_stride:
        raise ConfigError(f'--shape {shape[0]} {shape[1]} is smaller than '
                          f'the total stride {model.total_stride} of the '
                          'backbone')


def export_backbone(model: VanillaNet, dst: str, shape: Sequence[int],
                    opset: int = 17, dynamic: bool = True,
                    check: Optional[Callable[[str], None]] = None
                    ) -> List[str]:
    """Export ``model`` (fused) with input ``input`` (1×3×H×W) and outputs
    ``out0`` … to ``dst``, atomically; returns the output names.

    ``dynamic``: batch, height and width are dynamic axes (else fixed at
    ``shape``, batch 1). ``check(path)`` runs on the written file before it
    replaces ``dst``; if it raises, ``dst`` is left as it was.
    """
    check_shape(model, shape)
    names = [f'out{i}' for i in range(len(model.out_indices))]
    axes = {n: {0: 'batch', 2: 'height', 3: 'width'}
            for n in ['input', *names]} if dynamic else None
    with atomic_path(dst) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # the forward's input checks (channels, size >= the stride)
            # are constants of the trace, as they should be
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            torch.onnx.export(model, (torch.randn(1, 3, *shape), ), tmp,
                              opset_version=opset, input_names=['input'],
                              output_names=names, dynamic_axes=axes,
                              **onnx_export_kwargs())
        if check is not None:
            check(tmp)
    return names
