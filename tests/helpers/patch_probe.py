"""What vanillanet_mm must leave as it was in torch, mmengine, mmcv and
mmdeploy, as a snapshot of objects; run as a script it imports the package
between two snapshots and prints what changed (one name a line)."""
import importlib

import mmengine.logging
import mmengine.runner
import torch
import torch.onnx
import torch.serialization

_MISSING = object()


def _spaces() -> dict:
    """Modules without submodules and classes: every attribute counts."""
    spaces = {'torch.serialization': torch.serialization,
              'torch.onnx.symbolic_opset9': importlib.import_module(
                  'torch.onnx.symbolic_opset9'),
              'HistoryBuffer': mmengine.logging.HistoryBuffer,
              'MessageHub': mmengine.logging.MessageHub,
              'Runner': mmengine.runner.Runner,
              'CheckpointLoader': mmengine.runner.CheckpointLoader}
    try:
        spaces['mmcv.ops.point_sample'] = importlib.import_module(
            'mmcv.ops.point_sample')
    except ImportError:  # mmcv without its ops
        pass
    return spaces


def _user_safe_globals() -> frozenset:
    """torch's weights_only allow-list, less torch's own entries (torch
    adds some when a subsystem is first imported, e.g. torch._dynamo)."""
    return frozenset(
        g for g in torch.serialization.get_safe_globals()
        if not getattr(g[0] if isinstance(g, tuple) else g, '__module__',
                       '').startswith('torch'))


def _symbolic_records() -> dict:
    """mmdeploy's symbolic rewriter records (when mmdeploy is imported)."""
    import sys
    core = sys.modules.get('mmdeploy.core')
    if core is None:
        return {}
    records = core.SYMBOLIC_REWRITER._registry._rewrite_records
    return {name: tuple(r['_object'] for r in rs)
            for name, rs in records.items()}


def snapshot() -> dict:
    """(where, name) -> object, for everything the package could patch."""
    objs = {(where, name): value for where, space in _spaces().items()
            for name, value in vars(space).items()
            if name != '__warningregistry__'}  # the warnings module's
    objs['torch', 'load'] = torch.load
    objs['torch', 'save'] = torch.save
    objs['torch.onnx', 'export'] = torch.onnx.export
    if hasattr(torch.serialization, 'get_safe_globals'):
        objs['torch', 'safe_globals'] = _user_safe_globals()
    objs['mmdeploy', 'SYMBOLIC_REWRITER'] = _symbolic_records()
    return objs


def changed(before: dict, after: dict) -> list:
    """The names whose object differs (the allow-list and the records: by
    value)."""
    def same(a, b):
        return a is b or isinstance(a, (frozenset, dict)) and a == b

    return sorted(f'{w}.{n}' for w, n in before.keys() | after.keys()
                  if not same(before.get((w, n), _MISSING),
                              after.get((w, n), _MISSING)))


if __name__ == '__main__':
    before = snapshot()
    import vanillanet_mm  # noqa: F401
    print('\n'.join(changed(before, snapshot())))
