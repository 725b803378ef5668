"""What differs between the supported torch releases (2.1 … 2.14).

One place for every feature that needs a newer torch than the lower bound;
each switches off on an older torch with one log line naming the reason
(:func:`feature_off`):

* ``torch.library.custom_op`` (torch 2.4): the Triton series-activation
  operator. Without it the activation runs as the PyTorch ops.
* ``torch.serialization.add_safe_globals`` (torch 2.4) and the
  ``weights_only=True`` default of ``torch.load`` (torch 2.6): mmengine 0.10.7
  calls ``torch.load`` without ``weights_only``, so from torch 2.6 on it
  rejects the few non-tensor objects mmengine (and the official VanillaNet
  training script) pickle into checkpoints, e.g. ``Unsupported global:
  mmengine.logging.history_buffer.HistoryBuffer`` on ``--resume``. Instead of
  switching safety off, :func:`allow_mmengine_checkpoints` allow-lists exactly
  those types and stops HistoryBuffer from pickling its statistics functions
  (they pickle as ``getattr(HistoryBuffer, 'min')``, and allowing ``getattr``
  would make ``weights_only`` meaningless); its ``__setstate__`` restores
  them. Before torch 2.6 ``torch.load`` unpickles everything anyway.
* the ``dynamo`` flag of ``torch.onnx.export`` (torch 2.5; ``True`` by default
  in 2.9+): :func:`onnx_export_kwargs`.
"""
import argparse
import collections
import inspect
import logging

import numpy as np
import torch

TORCH_VERSION = tuple(int(p) for p in torch.__version__.split('+')[0].split(
    '.')[:2])
HAS_CUSTOM_OP = hasattr(torch.library, 'custom_op')
HAS_SAFE_GLOBALS = hasattr(torch.serialization, 'add_safe_globals')

_said = set()


def feature_off(feature: str, reason: str) -> None:
    """Log once per process that ``feature`` is off on this torch, and why."""
    if feature not in _said:
        _said.add(feature)
        logging.getLogger('vanillanet_mm').warning(
            '%s is off on torch %s: %s', feature, torch.__version__, reason)


def onnx_export_kwargs() -> dict:
    """``dynamo=False`` where ``torch.onnx.export`` has the flag (the
    TorchScript exporter, the only one before torch 2.5)."""
    params = inspect.signature(torch.onnx.export).parameters
    return {'dynamo': False} if 'dynamo' in params else {}


def _numpy_globals() -> list:
    core = getattr(np, '_core', None) or np.core
    dtype_types = [type(np.dtype(t)) for t in (
        np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8,
        np.bool_)]
    return [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray,
            np.dtype, *dtype_types]


def _history_buffer_getstate(self) -> dict:
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)  # re-registered on load
    return state


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's and the official trainer's checkpoint objects
    (a no-op before torch 2.4, whose ``torch.load`` has no allow-list)."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer, MessageHub
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    if not HAS_SAFE_GLOBALS:
        return
    allowed = [HistoryBuffer, MessageHub, ConfigDict, argparse.Namespace,
               collections.OrderedDict, collections.defaultdict,
               *_numpy_globals()]
    torch.serialization.add_safe_globals(allowed)
    # Also by name, where torch takes (global, name) pairs: another
    # library's `with torch.serialization.safe_globals([argparse.Namespace])`
    # (timm's checkpoint loader) removes the global itself on exit.
    try:
        torch.serialization.add_safe_globals(
            [(g, f'{g.__module__}.{g.__qualname__}') for g in allowed])
    except (TypeError, AttributeError):  # torch 2.4: no pairs
        pass
