"""Finding the modules a hook acts on, through wrappers and EMA copies."""
from typing import List

from mmengine.hooks import EMAHook
from mmengine.model import is_model_wrapper
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP/FSDP/mmengine wrappers."""
    return model.module if is_model_wrapper(model) else model


def modules_with(runner, attr: str, include_ema: bool = True
                 ) -> List[nn.Module]:
    """Every module of the runner's model (and EMA model) having ``attr``."""
    roots = [unwrap(runner.model)]
    if include_ema:
        roots += [hook.ema_model.module for hook in runner.hooks
                  if isinstance(hook, EMAHook) and hasattr(hook, 'ema_model')]
    return [m for root in roots for m in root.modules() if hasattr(m, attr)]
