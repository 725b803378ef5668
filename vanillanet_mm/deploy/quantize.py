"""INT8 post-training quantization of an exported ONNX model.

ONNX Runtime's static quantizer in the QDQ format (QuantizeLinear /
DequantizeLinear pairs around each quantized op), the form TensorRT reads
for explicit quantization and ONNX Runtime runs as integer kernels:

- weights: signed INT8 with one scale per output channel (a fused
  VanillaNet's 1x1 convs are merged from conv-BN-conv-BN pairs and its 9x9
  depthwise kernels have the activation BN folded in: their per-channel
  ranges differ by orders of magnitude, so one scale per tensor fails);
- activations: unsigned INT8, one scale per tensor, from the calibration
  inputs by ``method`` (``'minmax'``, ``'percentile'``, ``'entropy'``);
- only ``Conv`` nodes (which a fused VanillaNet and the FPN, RPN and mask
  heads are made of); the RoI box head's fully connected layers, resizes,
  pools, NMS and the rest of the post-processing stay in fp32.

:func:`node_groups` names the quantizable nodes by the part of the network
they belong to (``backbone.stem``, ``backbone.stages.3.conv``,
``backbone.stages.3.act``, ``neck``, ``heads``), for sensitivity analysis
and for keeping groups in fp32 (``exclude``).
"""
import os
import os.path as osp
import re
import tempfile
from collections import OrderedDict
from typing import Dict, Iterable, List, Sequence

import numpy as np

from ..utils.errors import ConfigError

METHODS = ('minmax', 'percentile', 'entropy')
OP_TYPES = ('Conv', )


def require_quantizer():
    """ONNX Runtime's quantization package, or one line naming the extra."""
    try:
        from onnxruntime import quantization
    except ImportError as e:
        raise ConfigError(
            f'INT8 needs onnxruntime and onnx ({e}): install the deploy '
            "extra, pip install -e '.[deploy]' (docs/install.md)") from e
    return quantization


def _group_of(name: str) -> str:
    """The network part of an exported node name such as
    ``/backbone/stages.3/act/Conv`` (torch.onnx's module scopes; a backbone
    exported alone has no ``/backbone`` scope)."""
    parts = [p for p in name.split('/') if p]
    inner = parts[1:] if parts[:1] == ['backbone'] else parts
    stage = re.fullmatch(r'stages\.(\d+)', inner[0]) if inner else None
    if stage:
        act = len(inner) > 2 and inner[1] == 'act'
        return f'backbone.stages.{stage[1]}.{"act" if act else "conv"}'
    if inner and inner[0].startswith('stem'):
        return 'backbone.stem'
    if parts[:1] == ['backbone'] and len(parts) > 2:
        return f'backbone.{parts[1]}'  # another backbone: its top modules
    if parts and parts[0] == 'neck':
        return 'neck'
    if parts and parts[0].endswith('head'):
        return 'heads'
    return 'other'


def node_groups(model_file: str) -> 'OrderedDict[str, List[str]]':
    """The quantizable nodes of ``model_file`` by network part, in graph
    order."""
    import onnx
    groups: 'OrderedDict[str, List[str]]' = OrderedDict()
    graph = onnx.load(model_file, load_external_data=False).graph
    for node in graph.node:
        if node.op_type in OP_TYPES:
            groups.setdefault(_group_of(node.name), []).append(node.name)
    return groups


class _Inputs:
    """ONNX Runtime's CalibrationDataReader over preprocessed inputs."""

    def __init__(self, name: str, inputs: Sequence[np.ndarray]):
        self.name, self.inputs, self.i = name, list(inputs), 0

    def get_next(self):
        if self.i == len(self.inputs):
            return None
        self.i += 1
        return {self.name: self.inputs[self.i - 1]}

    def rewind(self):
        self.i = 0


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(f'unknown calibration method {method!r}: use one '
                          f'of {", ".join(METHODS)}')
    return method


def quantize(src: str, dst: str, inputs: Sequence[np.ndarray],
             method: str = 'minmax', exclude: Iterable[str] = (),
             only: Iterable[str] = ()) -> Dict:
    """Write the INT8 (QDQ) model of ``src`` to ``dst``, calibrated on
    ``inputs`` (float32 arrays of the graph's one image input), atomically.

    ``exclude``: node groups (:func:`node_groups`) kept in fp32; ``only``:
    quantize just these groups. Returns the settings, for the report.
    """
    q = require_quantizer()
    check_method(method)
    if not len(inputs):
        raise ConfigError('no calibration inputs: INT8 needs at least one '
                          'image (--calib-images N, N >= 1, and a training '
                          'set with images)')
    groups = node_groups(src)
    unknown = sorted((set(exclude) | set(only)) - set(groups))
    if unknown:
        raise ConfigError(f'no node group {unknown} in {src}: the groups are '
                          f'{", ".join(groups)}')
    chosen = [g for g in groups
              if (not only or g in only) and g not in set(exclude)]
    nodes = [n for g in chosen for n in groups[g]]
    if not nodes:
        raise ConfigError(f'nothing left to quantize in {src}: every group '
                          'is excluded')
    import onnx
    input_name = onnx.load(src, load_external_data=False).graph.input[0].name
    calib = {'minmax': q.CalibrationMethod.MinMax,
             'percentile': q.CalibrationMethod.Percentile,
             'entropy': q.CalibrationMethod.Entropy}[method]
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.onnx', prefix='.int8-', dir=folder)
    os.close(fd)
    try:
        q.quantize_static(
            src, tmp, _Inputs(input_name, inputs),
            quant_format=q.QuantFormat.QDQ, per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            op_types_to_quantize=list(OP_TYPES), nodes_to_quantize=nodes,
            calibrate_method=calib)
        os.replace(tmp, dst)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return dict(format='QDQ', weights='int8 per output channel',
                activations='uint8 per tensor', method=method,
                calibration_images=len(inputs), op_types=list(OP_TYPES),
                quantized_groups=chosen,
                fp32_groups=[g for g in groups if g not in chosen],
                quantized_nodes=len(nodes),
                nodes=sum(len(v) for v in groups.values()))
