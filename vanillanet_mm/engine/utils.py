"""Finding the modules a hook acts on (through wrappers and EMA copies),
counting their parameters and switching their form."""
from typing import List, Tuple

from mmengine.analysis import parameter_count
from mmengine.hooks import EMAHook
from mmengine.model import is_model_wrapper
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP/FSDP/mmengine wrappers."""
    return model.module if is_model_wrapper(model) else model


def model_roots(runner, include_ema: bool = True
                ) -> List[Tuple[str, nn.Module]]:
    """``('model', model)`` and, per ``EMAHook``, ``('EMA model', copy)``."""
    roots = [('model', unwrap(runner.model))]
    if include_ema:
        roots += [('EMA model', hook.ema_model.module)
                  for hook in runner.hooks
                  if isinstance(hook, EMAHook) and hasattr(hook, 'ema_model')]
    return roots


def modules_with(runner, attr: str, include_ema: bool = True
                 ) -> List[nn.Module]:
    """Every module of the runner's model (and EMA model) having ``attr``."""
    return [m for _, root in model_roots(runner, include_ema)
            for m in root.modules() if hasattr(m, attr)]


def num_params(model: nn.Module) -> int:
    return parameter_count(model)['']


def switch_modules(root: nn.Module, method: str, flag: str,
                   **kwargs) -> List[str]:
    """Call ``method()`` (e.g. ``'switch_to_deploy'``) on every module of
    ``root`` that has it and whose ``flag`` says it still needs it (``deploy``
    False, or ``deep`` True); a child switched by its parent is skipped.
    ``kwargs`` go to each call. Returns the names of the modules switched."""
    def pending(m):
        return hasattr(m, method) and getattr(m, flag, False) == (
            flag == 'deep')

    todo = [(name, m) for name, m in root.named_modules() if pending(m)]
    done = []
    for name, m in todo:
        if pending(m):
            getattr(m, method)(**kwargs)
            done.append(name or type(m).__name__)
    return done
