"""Whole-model FLOPs of a detector/segmentor, in two conventions.

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` (one multiply-add = one
FLOP, as mmcv's counter and the official tables) traces ``model._forward`` on
one ``1×3×H×W`` input, so every operator counts. The official VanillaNet
detection table (mmcv 1.x's ``get_model_complexity_info``) counts through
module hooks and misses what runs as a plain function: VanillaNet's series
activations (upstream: ``F.conv2d`` inside an ``nn.ReLU`` subclass) and
Swin's attention products (``q @ k``, ``attn @ v``). ``official_gflops`` is
the total less those two, the number to put next to that table.

:func:`compare_forms` fuses a copy of one backbone and compares it with the
training form: the fused output's error and the latency of both.
"""
import copy
from typing import Dict, Sequence

import torch
from torch import nn

from .models.blocks import SeriesActivation
from .utils.latency import measure_ms, summarize
from .utils.numerics import max_rel_error

# mmengine's names of the products module hooks cannot see
_FUNCTIONAL_PRODUCTS = ('matmul', 'bmm', 'einsum')


class _TensorForward(nn.Module):
    """``model._forward(x, data_samples)`` as a one-input module."""

    def __init__(self, model: nn.Module, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, x):
        return self.model._forward(x, self.data_samples)


def _data_samples(model: nn.Module, shape: Sequence[int]):
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                batch_input_shape=(h, w), scale_factor=(1.0, 1.0))
    if type(model).__module__.startswith('mmseg'):
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta)]
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=meta)]


def model_flops(model: nn.Module, shape: Sequence[int]) -> Dict[str, float]:
    """GFLOPs of ``model`` (eval mode) at input ``1×3×shape``: ``gflops``
    (everything mmengine counts), ``act_gflops`` (the series activations'
    depthwise convs), ``matmul_gflops`` (tensor products outside layers,
    e.g. attention) and ``official_gflops`` (the total less both)."""
    from mmengine.analysis import FlopAnalyzer
    wrapper = _TensorForward(model, _data_samples(model, shape)).eval()
    x = torch.rand(1, 3, *shape, device=next(model.parameters()).device)
    acts = {name: m for name, m in wrapper.named_modules()
            if isinstance(m, SeriesActivation)}
    impls = {name: m.act_impl for name, m in acts.items()}
    analyzer = FlopAnalyzer(wrapper, (x, ))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    try:  # the Triton operator is opaque to the tracer: count the conv
        for m in acts.values():
            m.act_impl = 'torch'
        with torch.no_grad():
            total = analyzer.total()
            per_module = analyzer.by_module_and_operator()
            per_op = analyzer.by_operator()
    finally:
        for name, m in acts.items():
            m.act_impl = impls[name]
    act = sum(per_module.get(name, {}).get('conv', 0) for name in acts)
    matmul = sum(per_op.get(op, 0) for op in _FUNCTIONAL_PRODUCTS)
    # some handlers count in tensors
    total, act, matmul = float(total), float(act), float(matmul)
    return dict(gflops=total / 1e9, act_gflops=act / 1e9,
                matmul_gflops=matmul / 1e9,
                official_gflops=(total - act - matmul) / 1e9)


def compare_forms(backbone: nn.Module, shape: Sequence[int], iters: int,
                  warmup: int, tol: float = float('inf')) -> Dict[str, object]:
    """Fuse a copy of ``backbone`` (eval mode, λ = 1) and run both forms on
    the CPU on a random ``1×3×shape`` input (drawn once the copy is fused):
    ``rel_err`` (max relative error of the fused outputs vs the training
    form's), ``train_ms`` and ``fused_ms`` (median and p90 ms of each form,
    :func:`summarize`; None when ``rel_err`` exceeds ``tol``: a wrong fusion
    is not timed)."""
    fused = copy.deepcopy(backbone)
    fused.switch_to_deploy()
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        rel_err = max_rel_error(backbone(x), fused(x))
    if not rel_err <= tol:
        return dict(rel_err=rel_err, train_ms=None, fused_ms=None)
    train_ms, fused_ms = (summarize(measure_ms(lambda m=m: m(x), 'cpu',
                                               warmup, iters))
                          for m in (backbone, fused))
    return dict(rel_err=rel_err, train_ms=train_ms, fused_ms=fused_ms)
