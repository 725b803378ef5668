"""Rebuild a running optimizer after the model's parameters changed."""
import copy
import numbers

from mmengine.optim import OptimWrapper, OptimWrapperDict, build_optim_wrapper

from ..utils.errors import ConfigError
from .utils import unwrap


def _group_of(optimizer) -> dict:
    return {id(p): g for g in optimizer.param_groups for p in g['params']}


def _scale_scheduled(old, new) -> None:
    """Give ``new``'s groups the schedule ``old``'s have reached.

    mmengine's schedulers scale every group by the same factor of its
    ``initial_<key>``, so the factor read on a parameter both optimizers
    hold (a head, an activation) applies to every new group; this also
    carries ``auto_scale_lr``.
    """
    old_g, new_g = _group_of(old), _group_of(new)
    shared = [i for i in new_g if i in old_g]
    keys = {k[len('initial_'):] for g in old.param_groups for k in g
            if k.startswith('initial_')}
    for key in keys:
        ref = next((i for i in shared
                    if isinstance(new_g[i].get(key), numbers.Real)
                    and new_g[i][key] and old_g[i].get(f'initial_{key}')),
                   None)
        if ref is None:
            raise ConfigError(
                f'cannot carry the {key!r} schedule over: no parameter with '
                f'a non-zero {key} is kept by the model change')
        now = old_g[ref][key] / new_g[ref][key]
        initial = old_g[ref][f'initial_{key}'] / new_g[ref][key]
        for g in new.param_groups:
            g[f'initial_{key}'] = g[key] * initial
            g[key] = g[key] * now


def _schedulers(runner) -> list:
    scheds = runner.param_schedulers or []
    if isinstance(scheds, dict):
        return [s for group in scheds.values() for s in group]
    return list(scheds)


def rebuild_optimizer(runner) -> None:
    """A new optimizer for ``runner.model``'s current parameters.

    Built from the config's ``optim_wrapper`` (same constructor: layer
    decay, no weight decay on 1-D parameters, paramwise options) inside the
    existing wrapper, at the point of the schedule reached; parameters both
    optimizers hold keep their state (Adam moments), new ones start fresh;
    every param scheduler follows. Nothing to do while the runner has no
    optimizer yet.
    """
    wrapper = runner.optim_wrapper
    if isinstance(wrapper, dict):  # not built yet (testing, or before
        return                     # train()): built from the model as is
    cfg = runner.cfg.get('optim_wrapper')
    if (not isinstance(wrapper, OptimWrapper)
            or isinstance(wrapper, OptimWrapperDict) or cfg is None):
        raise ConfigError(
            'rebuilding the optimizer needs one optim_wrapper and the config '
            f'it came from (got {type(wrapper).__name__}; a Runner built with '
            'cfg=, as Runner.from_cfg and tools/train.py build it); or train '
            'without DeepTrainingHook(fuse_at_end)')
    old = wrapper.optimizer
    new = build_optim_wrapper(unwrap(runner.model),
                              copy.deepcopy(cfg)).optimizer
    _scale_scheduled(old, new)
    for g in new.param_groups:
        for p in g['params']:
            if p in old.state:
                new.state[p] = old.state[p]
    wrapper.optimizer = new
    for sched in _schedulers(runner):
        if sched.optimizer is old:
            sched.optimizer = new
        groups = new.param_groups
        sched.base_values = [g[f'initial_{sched.param_name}'] for g in groups]
        sched._last_value = [g[sched.param_name] for g in groups]
