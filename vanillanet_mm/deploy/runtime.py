"""What deploying needs at run time: the mmdeploy check, and three fixes
for this stack that :func:`deploy_patches` puts in place around the export
and takes off after it (nothing in site-packages is edited, nothing stays
changed in torch, mmcv or mmdeploy):

* torch 2.14's ``torch.onnx.export`` defaults to ``dynamo=True``, the new
  exporter, which mmdeploy's rewriters do not support (it fails on a missing
  ``onnxscript``); the default becomes ``dynamo=False`` (the TorchScript
  exporter mmdeploy was written for; a torch without the flag has only that
  one and is left as it is). The export runs in this process
  (mmdeploy's own ``tools/deploy.py`` spawns workers, which would not see the
  patch), so mmdeploy's ``torch.onnx.export`` call sees it.
* mmcv 2.1's ``ops/point_sample.py`` builds ``torch.tensor(x.shape[2:])``,
  which tracing freezes into a constant: ``SimpleRoIAlign`` exported with
  dynamic shapes then samples wrong features at other image sizes. The shape
  is computed with ``torch._shape_as_tensor`` instead, which stays a graph
  value; in eager mode it is the same numbers.
* mmdeploy's symbolic for mmcv's ``RoIAlign`` (ONNX Runtime: the standard
  ``RoiAlign``) imports ``torch.onnx.symbolic_opset9._cast_Long``, which
  torch 2.14 no longer has; it is put back (a Cast to int64).

It also registers GridSample for ONNX Runtime in mmdeploy's symbolic
rewriter (:func:`_grid_sampler_onnxruntime`), and takes the registration
off again on exit.
"""
import contextlib
import functools
import importlib
from typing import Iterator

import torch

from ..utils.compat import onnx_export_kwargs
from ..utils.errors import ConfigError

MMDEPLOY_VERSION = '1.3.1'


INSTALL_HINT = ("pip install -e '.[deploy]' && pip install --no-deps "
                f'mmdeploy=={MMDEPLOY_VERSION} (what scripts/setup_env.sh '
                'does; --no-deps: its pins would downgrade onnx and protobuf)')


def require_mmdeploy() -> None:
    """Raise one clear error when the ``deploy`` extra is missing."""
    missing = []
    for mod in ('mmdeploy', 'onnx', 'onnxruntime', 'aenum', 'multiprocess'):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ConfigError(f'deploying needs {", ".join(missing)} (the deploy '
                          f'extra): {INSTALL_HINT}')
    import mmdeploy
    if mmdeploy.__version__ != MMDEPLOY_VERSION:
        raise ConfigError(f'mmdeploy {mmdeploy.__version__} is installed; '
                          f'this tool is checked with {MMDEPLOY_VERSION}: '
                          f'{INSTALL_HINT}')


def _legacy_onnx_export(export):
    @functools.wraps(export)
    def wrapper(*args, dynamo: bool = False, **kwargs):
        return export(*args, dynamo=dynamo, **kwargs)

    wrapper._vanillanet_mm_legacy = True
    return wrapper


def _shape_from_feature_map(x: torch.Tensor) -> torch.Tensor:
    """mmcv's ``get_shape_from_feature_map`` (width, height as (1, 1, 2)),
    traced as a graph value instead of a constant."""
    return torch._shape_as_tensor(x)[2:].flip(0).view(1, 1, 2).to(
        x.device).float()


def _grid_sampler_onnxruntime(g, *args):
    """``grid_sample`` for ONNX Runtime: the standard ONNX GridSample from
    opset 16 on, mmdeploy's custom ``mmdeploy::grid_sampler`` below it."""
    from mmdeploy.core import SYMBOLIC_REWRITER
    from mmdeploy.utils import get_ir_config
    ctx = SYMBOLIC_REWRITER.get_context()
    if get_ir_config(ctx.cfg).get('opset_version', 11) >= 16:
        from torch.onnx.symbolic_opset16 import grid_sampler
    else:
        from mmdeploy.pytorch.symbolics.grid_sampler import grid_sampler
    return grid_sampler(g, *args)


def _cast_long(g, input, non_blocking=False):
    """``torch.onnx.symbolic_opset9._cast_Long`` (gone in torch 2.14), which
    mmdeploy's RoIAlign symbolic for ONNX Runtime imports."""
    return g.op('Cast', input, to_i=7)  # TensorProto.INT64


@contextlib.contextmanager
def _replaced(module, name: str, value) -> Iterator[None]:
    """``module.name`` is ``value`` inside; afterwards what it was (or
    absent, if it was), also after an exception."""
    missing = object()
    old = vars(module).get(name, missing)
    setattr(module, name, value)
    try:
        yield
    finally:
        if old is missing:
            delattr(module, name)
        else:
            setattr(module, name, old)


@contextlib.contextmanager
def _symbolic_registered(func_name: str, symbolic, **kwargs) -> Iterator[None]:
    """``symbolic`` in mmdeploy's ``SYMBOLIC_REWRITER`` inside (it is read
    when a ``RewriterContext`` is entered); its record removed afterwards
    (mmdeploy has no unregister: the record list of its registry)."""
    from mmdeploy.core import SYMBOLIC_REWRITER
    records = SYMBOLIC_REWRITER._registry._rewrite_records
    had_name = func_name in records
    SYMBOLIC_REWRITER.register_symbolic(func_name, **kwargs)(symbolic)
    try:
        yield
    finally:
        kept = [r for r in records.get(func_name, [])
                if r.get('_object') is not symbolic]
        if kept or had_name:
            records[func_name] = kept
        else:
            records.pop(func_name, None)


@contextlib.contextmanager
def deploy_patches() -> Iterator[None]:
    """The run-time fixes of this module's docstring, and GridSample for
    ONNX Runtime, for the calls inside (the export); everything as it was
    afterwards, also after an exception. A nested use adds nothing."""
    with contextlib.ExitStack() as stack:
        export = torch.onnx.export
        if onnx_export_kwargs() and not getattr(
                export, '_vanillanet_mm_legacy', False):
            stack.enter_context(_replaced(torch.onnx, 'export',
                                          _legacy_onnx_export(export)))
        opset9 = importlib.import_module('torch.onnx.symbolic_opset9')
        if not hasattr(opset9, '_cast_Long'):
            stack.enter_context(_replaced(opset9, '_cast_Long', _cast_long))
        # ``mmcv.ops.point_sample`` is the function (mmcv.ops re-exports it
        # over the module's name): the module itself
        point_sample = importlib.import_module('mmcv.ops.point_sample')
        if point_sample.get_shape_from_feature_map is not \
                _shape_from_feature_map:
            stack.enter_context(_replaced(
                point_sample, 'get_shape_from_feature_map',
                _shape_from_feature_map))
        from mmdeploy.core import SYMBOLIC_REWRITER
        if not any(r.get('_object') is _grid_sampler_onnxruntime for r in
                   SYMBOLIC_REWRITER._registry._rewrite_records.get(
                       'grid_sampler', [])):
            stack.enter_context(_symbolic_registered(
                'grid_sampler', _grid_sampler_onnxruntime,
                backend='onnxruntime', is_pytorch=True))
        yield
