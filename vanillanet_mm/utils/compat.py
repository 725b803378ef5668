"""Loading mmengine checkpoints under torch >= 2.6 (``weights_only=True``).

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6
that default is True and rejects the few non-tensor objects mmengine (and the
official VanillaNet training script) pickle into checkpoints, e.g.
``Unsupported global: mmengine.logging.history_buffer.HistoryBuffer`` on
``--resume``. Instead of switching safety off, allow-list exactly those types,
and stop HistoryBuffer from pickling its statistics functions (they pickle as
``getattr(HistoryBuffer, 'min')``, and allowing ``getattr`` would make
``weights_only`` meaningless). Its ``__setstate__`` restores them from the
class registry, so nothing is lost. Runner checkpoints written by mmengine
without this package imported still need ``weights_only=False`` to load.
"""
import argparse
import collections

import numpy as np
import torch


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
    """Allow-list mmengine's and the official trainer's checkpoint objects."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer, MessageHub
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    torch.serialization.add_safe_globals([
        HistoryBuffer, MessageHub, ConfigDict, argparse.Namespace,
        collections.OrderedDict, collections.defaultdict, *_numpy_globals()
    ])
