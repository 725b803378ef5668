"""What differs between the supported torch releases (2.1 … 2.15).

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
  switching safety off, :func:`mmengine_checkpoint_objects` allow-lists
  exactly those types around one load and takes them off again (importing
  the package changes nothing in torch or mmengine): our tools and the
  checkpoint reader of :mod:`vanillanet_mm.models.checkpoint` load inside
  it, and :func:`scope_runner_loads` puts the runner's ``load_checkpoint``
  (``load_from``, ``--resume``) inside it, which ``AtomicCheckpointHook``
  (in every config of this package) does when a run starts. HistoryBuffer
  pickles its statistics functions, as ``getattr(HistoryBuffer, 'min')``,
  and allowing ``getattr`` would make ``weights_only`` meaningless: the same
  hook saves the checkpoint's copies of the buffers without them
  (:func:`weights_only_loadable`); HistoryBuffer's ``__setstate__`` puts
  them back on load. Before torch 2.6 ``torch.load`` unpickles everything
  anyway, and before 2.4 there is no allow-list (the context does nothing).
* the ``dynamo`` flag of ``torch.onnx.export`` (torch 2.5; ``True`` by default
  in 2.9+): :func:`onnx_export_kwargs`.
"""
import argparse
import collections
import contextlib
import functools
import inspect
import logging
import threading
import types
from typing import Iterator

import numpy as np
import torch

TORCH_VERSION = tuple(int(p) for p in torch.__version__.split('+')[0].split(
    '.')[:2])
HAS_CUSTOM_OP = hasattr(torch.library, 'custom_op')
HAS_SAFE_GLOBALS = all(hasattr(torch.serialization, f) for f in (
    'add_safe_globals', 'get_safe_globals', 'clear_safe_globals'))

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


def checkpoint_globals() -> list:
    """What mmengine's runner and the official trainer pickle into a
    checkpoint beside tensors and plain types; each also by name, where
    torch takes (global, name) pairs: another library's
    ``with torch.serialization.safe_globals([argparse.Namespace])`` (timm's
    checkpoint loader) removes the global itself on exit, not the pair."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer, MessageHub
    allowed = [HistoryBuffer, MessageHub, ConfigDict, argparse.Namespace,
               collections.OrderedDict, collections.defaultdict,
               *_numpy_globals()]
    signature = str(inspect.signature(torch.serialization.add_safe_globals))
    if 'tuple' in signature.lower():  # torch 2.4 would take, then fail
        allowed += [(g, f'{g.__module__}.{g.__qualname__}') for g in allowed]
    return allowed


_allow_lock = threading.Lock()
_allow_users = 0  # contexts active in this process (threads, nesting)
_allow_added: list = []


@contextlib.contextmanager
def mmengine_checkpoint_objects() -> Iterator[None]:
    """While active, ``torch.load(weights_only=True)`` (mmengine's loads on
    torch >= 2.6) accepts :func:`checkpoint_globals`; when the last active
    one (of any thread, or nested) exits, exactly the ones it added are
    taken off torch's allow-list again, also after an exception. Nothing on
    a torch without the allow-list (< 2.4)."""
    global _allow_users, _allow_added
    if not HAS_SAFE_GLOBALS:
        yield
        return
    with _allow_lock:
        if _allow_users == 0:
            before = set(torch.serialization.get_safe_globals())
            _allow_added = [g for g in checkpoint_globals()
                            if g not in before]
            torch.serialization.add_safe_globals(_allow_added)
        _allow_users += 1
    try:
        yield
    finally:
        with _allow_lock:
            _allow_users -= 1
            if _allow_users == 0:
                added = set(_allow_added)
                kept = [g for g in torch.serialization.get_safe_globals()
                        if g not in added]
                torch.serialization.clear_safe_globals()
                torch.serialization.add_safe_globals(kept)


def _loads_checkpoint_objects(load):
    """``load`` (a bound method) inside :func:`mmengine_checkpoint_objects`."""

    @functools.wraps(load)
    def wrapper(*args, **kwargs):
        with mmengine_checkpoint_objects():
            return load(*args, **kwargs)

    wrapper.checkpoint_objects = True
    return wrapper


def scope_runner_loads(runner) -> None:
    """Load this runner's checkpoints (``load_from``, ``resume``: both call
    ``runner.load_checkpoint``) inside :func:`mmengine_checkpoint_objects`:
    an attribute of this runner object; the Runner class is not touched."""
    load = runner.load_checkpoint
    if not getattr(load, 'checkpoint_objects', False):
        runner.load_checkpoint = _loads_checkpoint_objects(load)


def _state_without_statistics_methods(buffer) -> dict:
    return {k: v for k, v in vars(buffer).items()
            if k not in ('statistics_methods', '__getstate__')}


def weights_only_loadable(checkpoint: dict) -> None:
    """Make the HistoryBuffers of a runner ``checkpoint`` (the MessageHub's
    copies, made for it) pickle without their statistics functions, which
    a ``weights_only`` load refuses (they pickle as ``getattr``); on load
    HistoryBuffer's ``__setstate__`` registers the defaults again. Set on
    those copies only: HistoryBuffer itself is not touched."""
    from mmengine.logging import HistoryBuffer
    hub = checkpoint.get('message_hub')
    scalars = hub.get('log_scalars', {}) if isinstance(hub, dict) else {}
    for buffer in scalars.values():
        if type(buffer) is HistoryBuffer:
            # pickle looks __getstate__ up on the object: the instance's
            buffer.__getstate__ = types.MethodType(
                _state_without_statistics_methods, buffer)
