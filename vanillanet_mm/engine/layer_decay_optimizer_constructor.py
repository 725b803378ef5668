"""Layer-wise learning-rate decay for VanillaNet detectors/segmentors."""
import logging
from typing import List, Optional, Union

from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from ..models.blocks import SeriesActivation
from ..models.checkpoint import strip_wrapper_prefix
from ..utils.errors import ConfigError

DECAY_TYPES = ('layer_wise', 'stage_wise')


class _DropParamwiseLines(logging.Filter):
    """Drops mmengine's one log line per parameter option (a table instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith('paramwise_options --')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class VanillaNetLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise lr decay with the official VanillaNet grouping.

    ``'layer_wise'``: ``backbone.stem*`` → layer 0, ``backbone.stages.{s}``
    → s // 2 + 1; ``'stage_wise'``: stage s → s + 1. Everything else (neck,
    heads) → num_layers + 1. Every parameter's lr (after mmengine's options)
    is multiplied by its layer's ``lr_scale`` = decay_rate ** (num_layers + 1
    - layer).

    MMEngine's ``paramwise_cfg`` options (``custom_keys``, ``bias_lr_mult``,
    ``bias_decay_mult``, ``norm_decay_mult``, ``dwconv_decay_mult``,
    ``flat_decay_mult``, ``bypass_duplicate``, ...) apply as in
    :class:`DefaultOptimWrapperConstructor`, with two differences:

    - ``flat_decay_mult`` defaults to 0: the official rule, no weight decay
      on 1-D parameters (every bias is one); 1 decays them too.
    - ``dwconv_decay_mult`` also covers the series activation's depthwise
      kernel (``SeriesActivation.weight``; its ``bias`` in the deploy form
      unless ``bias_decay_mult`` is set), as it covers a depthwise
      ``nn.Conv2d``, unless a custom key matches it.

    Parameters with the same settings share one param group, ordered by
    layer (as few groups as options: the optimizer's foreach kernels stay
    efficient, and checkpoints of earlier runs keep their group layout).

    Args (in ``optim_wrapper.paramwise_cfg``, besides mmengine's):
        num_layers (int): backbone groups after the stem; 6 for VN13
            layer_wise (11 stages), 4 for VN9. Required.
        decay_rate (float): lr ratio between consecutive groups; 0.6
            officially. Required.
        decay_type (str): ``'layer_wise'`` or ``'stage_wise'``. Defaults to
            ``'layer_wise'``.
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        missing = [k for k in ('num_layers', 'decay_rate')
                   if k not in paramwise_cfg]
        if missing:
            raise ConfigError(
                f'paramwise_cfg lacks {", ".join(missing)}: set e.g. '
                'num_layers=6, decay_rate=0.6 (VanillaNet-13, official)')
        decay_type = paramwise_cfg.get('decay_type', 'layer_wise')
        if decay_type not in DECAY_TYPES:
            raise ConfigError(f"decay_type must be 'layer_wise' or "
                              f"'stage_wise', got {decay_type!r}")
        paramwise_cfg.setdefault('flat_decay_mult', 0.)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.base_lr is None:
            raise ConfigError('layer decay scales optimizer.lr: set '
                              'optim_wrapper.optimizer.lr')

    def layer_id(self, name: str, num_layers: int) -> int:
        if name.startswith('backbone.stem'):
            return 0
        if name.startswith('backbone.stages.'):
            stage = int(name.split('.')[2])
            layer = (stage // 2 + 1 if self.paramwise_cfg.get(
                'decay_type', 'layer_wise') == 'layer_wise' else stage + 1)
            if layer > num_layers:
                raise ConfigError(
                    f'{name} falls in layer {layer} > '
                    f'num_layers={num_layers}: '
                    'raise paramwise_cfg.num_layers for this arch/decay_type')
            return layer
        return num_layers + 1

    def add_params(self, params: List[dict], module: nn.Module,
                   prefix: str = '',
                   is_dcn_module: Optional[Union[int, float]] = None) -> None:
        """MMEngine's groups, each lr scaled by its parameter's layer."""
        if prefix:  # mmengine's recursion into the submodules
            return super().add_params(params, module, prefix, is_dcn_module)
        groups: List[dict] = []  # one per parameter
        logger = MMLogger.get_current_instance()
        quiet = _DropParamwiseLines()
        logger.addFilter(quiet)
        try:
            super().add_params(groups, module, prefix, is_dcn_module)
        finally:
            logger.removeFilter(quiet)
        names = {id(p): strip_wrapper_prefix(n)
                 for n, p in module.named_parameters()}
        dw_mult = self.paramwise_cfg.get('dwconv_decay_mult')
        series = (self._series_kernels(module) if dw_mult is not None
                  and self.base_wd is not None else set())
        num_layers = self.paramwise_cfg['num_layers']
        rate = self.paramwise_cfg['decay_rate']
        merged, seen = [], set()  # (layer, options, group), param ids
        for group in groups:
            param, = group.pop('params')
            name = names[id(param)]
            if id(param) in seen:
                raise ConfigError(
                    f'{name} is shared by several modules: set paramwise_cfg.'
                    'bypass_duplicate=True to optimize it once')
            seen.add(id(param))
            layer = self.layer_id(name, num_layers)
            scale = rate**(num_layers + 1 - layer)
            group['lr'] = group.get('lr', self.base_lr) * scale
            group['lr_scale'] = scale
            if id(param) in series:
                group['weight_decay'] = self.base_wd * dw_mult
            same = next((m for m in merged if m[1] == group), None)
            if same is None:
                same = (layer, group, dict(group, params=[], param_names=[]))
                merged.append(same)
            same[2]['params'].append(param)
            same[2]['param_names'].append(name)
        merged.sort(key=lambda m: m[0])  # stable: first appearance next
        params.extend(m[2] for m in merged)
        self._log_table(merged)

    def _series_kernels(self, module: nn.Module) -> set:
        """ids of the series-activation parameters ``dwconv_decay_mult``
        applies to, by mmengine's precedence (custom key, then bias)."""
        keys = self.paramwise_cfg.get('custom_keys', {})
        bias_rule = self.paramwise_cfg.get('bias_decay_mult') is not None
        return {id(p) for prefix, m in module.named_modules()
                if isinstance(m, SeriesActivation)
                for name, p in m.named_parameters(recurse=False)
                if not any(k in f'{prefix}.{name}' for k in keys)
                and not (name == 'bias' and bias_rule)}

    def _log_table(self, merged: list) -> None:
        lines = [f'{"layer":>5} {"lr_scale":>9} {"lr":>10} {"wd":>8}  '
                 'parameters']
        for layer, _, g in merged:
            wd = g.get('weight_decay', self.base_wd)
            lines.append(
                f'{layer:>5} {g["lr_scale"]:>9.5f} {g["lr"]:>10.4g} '
                f'{"-" if wd is None else f"{wd:g}":>8}  '
                f'{len(g["params"])}: {g["param_names"][0]} .. '
                f'{g["param_names"][-1]}')
        decay_type = self.paramwise_cfg.get('decay_type', 'layer_wise')
        print_log(f'VanillaNet layer decay groups ({decay_type}):\n' +
                  '\n'.join(lines), logger='current')
