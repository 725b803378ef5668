"""Layer-wise learning-rate decay for VanillaNet detectors/segmentors."""
from typing import List

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from ..models.checkpoint import strip_wrapper_prefix
from ..utils.errors import ConfigError


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class VanillaNetLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise lr decay with the official VanillaNet grouping.

    ``'layer_wise'``: ``backbone.stem*`` → group 0, ``backbone.stages.{s}``
    → s // 2 + 1; ``'stage_wise'``: stage s → s + 1. Everything else (neck,
    heads) → num_layers + 1. lr scale = decay_rate ** (num_layers + 1 - id).
    1-D parameters and biases get no weight decay.

    Args (in ``optim_wrapper.paramwise_cfg``, with mmengine's
    ``DefaultOptimWrapperConstructor`` arguments otherwise):
        num_layers (int): backbone groups after the stem; 6 for VN13
            layer_wise (11 stages), 4 for VN9. Required.
        decay_rate (float): lr ratio between consecutive groups; 0.6
            officially. Required.
        decay_type (str): ``'layer_wise'`` or ``'stage_wise'``. Defaults to
            ``'layer_wise'``.
    """

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
                   **kwargs) -> None:
        cfg = self.paramwise_cfg
        decay_type = cfg.get('decay_type', 'layer_wise')
        if decay_type not in ('layer_wise', 'stage_wise'):
            raise ConfigError(f"decay_type must be 'layer_wise' or "
                             f"'stage_wise', got {decay_type!r}")
        num_layers, rate = cfg['num_layers'], cfg['decay_rate']
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            name = strip_wrapper_prefix(name)
            no_decay = param.ndim == 1 or name.endswith('.bias')
            layer = self.layer_id(name, num_layers)
            key = (layer, no_decay)
            if key not in groups:
                scale = rate**(num_layers + 1 - layer)
                groups[key] = dict(
                    params=[], param_names=[], lr_scale=scale,
                    lr=self.base_lr * scale,
                    weight_decay=0. if no_decay else self.base_wd)
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        lines = [f'{"layer":>5} {"decay":>5} {"lr_scale":>9} {"wd":>6}  '
                 'parameters']
        for (layer, no_decay), g in sorted(groups.items()):
            lines.append(
                f'{layer:>5} {"no" if no_decay else "yes":>5} '
                f'{g["lr_scale"]:>9.5f} {g["weight_decay"]:>6g}  '
                f'{len(g["params"])}: {g["param_names"][0]} .. '
                f'{g["param_names"][-1]}')
        print_log('VanillaNet layer decay groups (' + decay_type + '):\n' +
                  '\n'.join(lines), logger='current')
        params.extend(groups[k] for k in sorted(groups))
