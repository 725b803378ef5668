"""INT8 post-training quantization of an exported ONNX model.

ONNX Runtime's static quantizer in the QDQ format (QuantizeLinear /
DequantizeLinear pairs around each quantized op; ONNX Runtime fuses each
pair-Conv-pair into an integer kernel):

- weights: signed INT8 with one scale per output channel (a fused
  VanillaNet's 1x1 convs are merged from conv-BN-conv-BN pairs and its 9x9
  depthwise kernels have the activation BN folded in: their per-channel
  ranges differ by orders of magnitude, so one scale per tensor fails);
- activations: unsigned INT8 with a zero point, one scale per tensor, from
  the calibration inputs by ``method`` (``'minmax'``, ``'percentile'``,
  ``'entropy'``), ONNX Runtime's choice for its CPU kernels. (TensorRT reads
  QDQ graphs too, but signed symmetric INT8 only: zero point 0);
- only ``Conv`` nodes (which a fused VanillaNet and the FPN, RPN and mask
  heads are made of); the RoI box head's fully connected layers, resizes,
  pools, NMS and the rest of the post-processing stay in fp32.

Calibration runs one input at a time, merging each one's ranges (or
histograms) into the last: the memory of one inference whatever their
number, and tensors whose size differs between images (RoI heads) work
with every method.

:func:`node_groups` names the quantizable nodes by the part of the network
they belong to, for sensitivity analysis (``only``) and for keeping groups
in fp32 (``exclude``).
"""
import contextlib
import inspect
import io
import logging
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..utils.errors import ConfigError
from ..utils.fileio import atomic_path

METHODS = ('minmax', 'percentile', 'entropy')
OP_TYPES = ('Conv', )


def require_quantizer(reuse_ranges: bool = False):
    """ONNX Runtime's quantization package, or one line naming the extra.
    ``reuse_ranges``: also its calibration cache (``ranges`` of
    :func:`quantize`)."""
    try:
        from onnxruntime import quantization
    except ImportError as e:
        raise ConfigError(
            f'INT8 needs onnxruntime and onnx ({e}): install the deploy '
            "extra, pip install -e '.[deploy]' (docs/install.md)") from e
    if reuse_ranges and 'calibration_cache_path' not in inspect.signature(
            quantization.quantize_static).parameters:
        import onnxruntime
        raise ConfigError(
            f'onnxruntime {onnxruntime.__version__} cannot reuse a '
            'calibration (quantize_static has no calibration_cache_path), '
            'which the sensitivity analysis needs: pip install -U '
            'onnxruntime (checked with 1.32)')
    return quantization


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(f'unknown calibration method {method!r}: use one '
                          f'of {", ".join(METHODS)}')
    return method


# ------------------------------------------------------------ node groups
def _group_of(name: str, whole_model: bool) -> str:
    """The network part of an exported node name such as
    ``/backbone/stages.3/act/Conv`` (torch.onnx's module scopes). In a
    whole model, what is neither backbone nor neck is the heads' (mmseg's
    decode head runs inside an mmdeploy rewrite, so its nodes carry no
    ``/decode_head`` scope); a backbone exported alone is all backbone."""
    parts = [p for p in name.split('/') if p]
    if whole_model:
        if parts[:1] == ['neck']:
            return 'neck'
        if parts[:1] != ['backbone']:
            return 'heads'
        parts = parts[1:]
    stage = re.fullmatch(r'stages\.(\d+)', parts[0]) if parts else None
    if stage:
        act = len(parts) > 2 and parts[1] == 'act'
        return f'backbone.stages.{stage[1]}.{"act" if act else "conv"}'
    if parts and parts[0].startswith('stem'):
        return 'backbone.stem'
    # another backbone (ResNet: conv1, layer1, ...): its top modules
    return f'backbone.{parts[0]}' if len(parts) > 1 else 'backbone'


def node_groups(model_file: str) -> 'OrderedDict[str, List[str]]':
    """The quantizable nodes of ``model_file`` by network part, in graph
    order: ``backbone.stem``, ``backbone.stages.N.conv`` (a stage's merged
    1x1 conv), ``backbone.stages.N.act`` (its series activation's depthwise
    conv), ``neck``, ``heads``; another backbone by its top modules
    (``backbone.layer1``, ...)."""
    import onnx
    nodes = onnx.load(model_file, load_external_data=False).graph.node
    whole = any(n.name.startswith('/backbone/') for n in nodes)
    groups: 'OrderedDict[str, List[str]]' = OrderedDict()
    for node in nodes:
        if node.op_type in OP_TYPES:
            groups.setdefault(_group_of(node.name, whole),
                              []).append(node.name)
    return groups


def select_groups(groups: Dict[str, List[str]], exclude: Iterable[str] = (),
                  only: Iterable[str] = ()) -> List[str]:
    """The groups to quantize: ``only`` (all when empty) less ``exclude``;
    an unknown name, or nothing left, is one line listing the groups."""
    exclude, only = set(exclude), set(only)
    unknown = sorted((exclude | only) - set(groups))
    if unknown:
        raise ConfigError(f'no node group {", ".join(unknown)} in the ONNX '
                          f'model: its groups are {", ".join(groups)}')
    chosen = [g for g in groups if (not only or g in only)
              and g not in exclude]
    if not chosen:
        raise ConfigError('nothing left to quantize: every node group is '
                          f'excluded (the groups: {", ".join(groups)})')
    return chosen


def static_input_shape(model_file: str) -> Optional[Tuple[int, int]]:
    """(H, W) of the graph's image input when fixed, else None."""
    import onnx
    graph = onnx.load(model_file, load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    sizes = [d.dim_value if d.HasField('dim_value') else None for d in dims]
    return None if None in sizes[2:] else tuple(sizes[2:])


# ---------------------------------------------------------- quantization
class _Inputs:
    """ONNX Runtime's CalibrationDataReader over preprocessed inputs, with
    the ranges its strided calibration reads one input at a time."""

    def __init__(self, name: str, inputs: Sequence[np.ndarray]):
        self.name, self.inputs = name, list(inputs)
        self.set_range(0, len(self.inputs))

    def __len__(self):
        return len(self.inputs)

    def set_range(self, start_index: int, end_index: int):
        self.i, self.end = start_index, end_index

    def get_next(self):
        if self.i >= self.end:
            return None
        self.i += 1
        return {self.name: self.inputs[self.i - 1]}

    def rewind(self):
        self.set_range(0, len(self.inputs))


def _not_preprocess_hint(record: logging.LogRecord) -> bool:
    return 'pre-processing before quantization' not in record.getMessage()


@contextlib.contextmanager
def _quiet():
    """The quantizer without its progress prints (stdout) and its hint to
    run its optional pre-processing first (not run here); its other
    warnings pass."""
    root = logging.getLogger()
    root.addFilter(_not_preprocess_hint)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(_not_preprocess_hint)


def quantize(src: str, dst: str, inputs: Sequence[np.ndarray],
             method: str = 'minmax', exclude: Iterable[str] = (),
             only: Iterable[str] = (), ranges: Optional[str] = None,
             symmetric: bool = False) -> Dict:
    """Write the INT8 (QDQ) model of ``src`` to ``dst``, calibrated on
    ``inputs`` (float32 arrays of the graph's one image input), atomically.

    ``exclude``: node groups (:func:`node_groups`) kept in fp32; ``only``:
    quantize just these groups. ``ranges``: a file for the calibration
    result (every Conv tensor's, whatever the groups), computed and written
    when missing, read when present: one calibration for several
    quantizations of ``src`` with the same ``method``. ``symmetric``:
    signed INT8 activations with zero point 0, the only QDQ activations
    TensorRT accepts (ONNX Runtime's x86 kernels prefer the default UINT8
    with a zero point). Returns the settings, for the report.
    """
    q = require_quantizer(reuse_ranges=ranges is not None)
    check_method(method)
    if not len(inputs):
        raise ConfigError('no calibration inputs: INT8 needs at least one '
                          'image (--calib-images N, N >= 1, and a training '
                          'set with images)')
    groups = node_groups(src)
    chosen = select_groups(groups, exclude, only)
    nodes = [n for g in chosen for n in groups[g]]
    import onnx
    input_name = onnx.load(src, load_external_data=False).graph.input[0].name
    calib = {'minmax': q.CalibrationMethod.MinMax,
             'percentile': q.CalibrationMethod.Percentile,
             'entropy': q.CalibrationMethod.Entropy}[method]
    cache = {} if ranges is None else dict(calibration_cache_path=ranges)
    with atomic_path(dst) as tmp, _quiet():
        q.quantize_static(
            src, tmp, _Inputs(input_name, inputs),
            quant_format=q.QuantFormat.QDQ, per_channel=True,
            activation_type=(q.QuantType.QInt8 if symmetric else
                             q.QuantType.QUInt8),
            weight_type=q.QuantType.QInt8,
            op_types_to_quantize=list(OP_TYPES), nodes_to_quantize=nodes,
            calibrate_method=calib,
            extra_options=dict(CalibStridedMinMax=1,
                               ActivationSymmetric=symmetric), **cache)
    return dict(format='QDQ', weights='int8 per output channel',
                activations=('int8 symmetric per tensor (zero point 0)'
                             if symmetric else 'uint8 per tensor'),
                method=method,
                calibration_images=len(inputs), op_types=list(OP_TYPES),
                quantized_groups=chosen,
                fp32_groups=[g for g in groups if g not in chosen],
                quantized_nodes=len(nodes),
                nodes=sum(len(v) for v in groups.values()))
