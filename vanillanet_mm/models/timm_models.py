"""VanillaNet classifiers in timm's registry (``timm.create_model``).

``vanillanet_5`` … ``vanillanet_13_x1_5_ada_pool``, timm models in timm's
own contract: ``forward_features`` / ``forward_head(pre_logits=)``,
``reset_classifier``, ``get_classifier``, ``group_matcher``,
``set_grad_checkpointing``, ``forward_intermediates`` /
``prune_intermediate_layers`` (so ``features_only=True, out_indices=...``
works; the default is the last stage of each resolution),
``timm.utils.reparameterize_model`` (stem, stages and head each fuse
themselves; refused at λ ≠ 1) and official checkpoints through
:func:`checkpoint_filter_fn`::

    timm.create_model('vanillanet_13', pretrained=True, num_classes=10,
                      pretrained_cfg_overlay=dict(file='vanillanet_13.pth'))

torch and timm only: this module and what it imports (:mod:`.arch`,
:mod:`.blocks`, :mod:`.fusion`, :mod:`vanillanet_mm.ops`,
:mod:`vanillanet_mm.utils.errors`) import no mmcv / mmengine / mmdet /
mmseg (``tests/models/test_timm_contract.py`` imports it where those cannot be
imported). The package's ``__init__`` registers the OpenMMLab side too, so
``import vanillanet_mm`` needs mmengine; it registers these models as well.

Keys: ``stem.conv1`` / ``stem.conv2`` / ``stem.act`` (:class:`Stem`;
``stem.conv`` / ``stem.act`` fused), ``stages.{i}.*`` exactly as the
official ones, ``head.fc1`` / ``head.norm`` / ``head.fc2``
(:class:`VanillaNetHead`; ``head.fc`` fused). ``deploy=True`` builds the
fused form; its ``pretrained_cfg`` names the fused ``first_conv`` and
``classifier``. λ (``act_learn``, the buffer ``_act_learn``) defaults to
1, where ImageNet training ends; fine-tuning with deep training sets it
(:meth:`VanillaNetClassifier.set_act_learn`).
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import SelectAdaptivePool2d, trunc_normal_
from timm.models import (
    build_model_with_cfg,
    checkpoint,
    generate_default_cfgs,
    register_model,
)
from timm.models._features import feature_take_indices
from torch import Tensor, nn

from ..utils.errors import ConfigError
from .arch import (
    ARCH_SETTINGS,
    check_act_num,
    multiscale_out_indices,
    resolve_arch,
    stage_reductions,
    stem_conv,
)
from .blocks import (
    NormLayer,
    Stage,
    Stem,
    batch_norm,
    check_fusable,
    merge_conv_norm_conv,
    set_act_impl,
)

#: ``pretrained_cfg`` names of the first conv and the classifier, per layout
CFG_NAMES = {
    'training': dict(first_conv='stem.conv1.0',
                     classifier=('head.fc1', 'head.fc2')),
    'deploy': dict(first_conv='stem.conv', classifier='head.fc'),
}


def _init_conv(m: nn.Module) -> None:
    """Upstream's init: conv weights truncated normal (std 0.02), bias 0."""
    if isinstance(m, nn.Conv2d):
        trunc_normal_(m.weight, std=.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class VanillaNetHead(nn.Module):
    """The official head: global pool, dropout, 1x1 conv-BN, λ-leaky, 1x1
    conv (``fc1``, ``norm``, ``fc2``); fused: pool, dropout, one 1x1 conv
    (``fc``). Both convs depend on ``num_classes`` (0: pool only); they run
    on the unpooled map when ``pool_type`` is ``''``."""

    def __init__(self, in_features: int, num_classes: int,
                 pool_type: str = 'avg', drop_rate: float = 0.,
                 deploy: bool = False, norm_layer: NormLayer = batch_norm):
        super().__init__()
        self.in_features = in_features
        self.deploy = deploy
        self.norm_layer = norm_layer
        self.act_learn = 1.0
        self.global_pool = SelectAdaptivePool2d(pool_type=pool_type)
        self.drop = nn.Dropout(drop_rate)
        self.reset(num_classes)

    def reset(self, num_classes: int, pool_type: Optional[str] = None):
        """New class-dependent convs for ``num_classes`` (and a new pool)."""
        if pool_type is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=pool_type)
        for name in ('fc1', 'norm', 'fc2', 'fc'):
            self._modules.pop(name, None)
        self.num_classes = num_classes
        if not num_classes:
            return
        width = self.in_features * self.global_pool.feat_mult()
        if self.deploy:
            self.fc = nn.Conv2d(width, num_classes, 1)
        else:
            self.fc1 = nn.Conv2d(width, num_classes, 1)
            self.norm = self.norm_layer(num_classes)
            self.fc2 = nn.Conv2d(num_classes, num_classes, 1)
        self.apply(_init_conv)

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.drop(self.global_pool(x))
        if self.num_classes and not pre_logits:
            if self.deploy:
                x = self.fc(x)
            else:
                x = self.fc2(F.leaky_relu(self.norm(self.fc1(x)),
                                          self.act_learn))
        return x.flatten(1) if self.global_pool.pool_type else x

    @torch.no_grad()
    def switch_to_deploy(self, force: bool = False) -> None:
        """Fuse ``fc1``, ``norm``, ``fc2`` into ``fc`` (idempotent); refused
        at λ ≠ 1 unless ``force`` (fuse as if λ = 1)."""
        if self.deploy:
            return
        check_fusable(self.act_learn, force,
                      'VanillaNetHead.switch_to_deploy()')
        if self.num_classes:
            self.fc = merge_conv_norm_conv(self.fc1, self.norm, self.fc2)
            del self.fc1, self.norm, self.fc2
        self.deploy = True


class VanillaNetClassifier(nn.Module):
    """VanillaNet with the official head, in timm's model contract.

    Args:
        arch (str | dict): a key of :data:`.arch.ARCH_SETTINGS` or a dict
            with ``dims`` and ``strides`` (and ``ada_pool``): custom widths.
        num_classes (int): classes; 0 drops the class-dependent convs.
        in_chans (int): input channels.
        global_pool (str): timm pool type; ``''`` keeps the map.
        drop_rate (float): dropout before the head's convs.
        act_num (int): series activation radius n, kernels (2n+1)².
        deploy (bool): build the fused (inference) form.
        act_learn (float): λ, the slope of the leaky ReLUs between the
            convs of each pair (1 = linear; ImageNet training ends there).
        act_impl (str): how fused activations run: 'auto', 'triton',
            'torch' (see :mod:`vanillanet_mm.ops.series_act`).
        img_size: accepted for timm's ``fixed_input_size`` convention (the
            ada-pool variant); the network takes any size.
    """

    def __init__(self, arch: Union[str, dict] = 'vanillanet_13',
                 num_classes: int = 1000, in_chans: int = 3,
                 global_pool: str = 'avg', drop_rate: float = 0.,
                 act_num: int = 3, deploy: bool = False,
                 act_learn: float = 1.0, act_impl: str = 'auto',
                 img_size=None):
        super().__init__()
        self.arch = resolve_arch(arch)
        check_act_num(act_num)
        dims, strides = self.arch['dims'], self.arch['strides']
        ada_pool = self.arch.get('ada_pool') or [0] * len(strides)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.act_num = act_num
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = dims[-1]
        self.grad_checkpointing = False
        conv = stem_conv(self.arch)
        self.stem = Stem(in_chans, dims[0], act_num, conv['stride'],
                         conv['padding'], deploy)
        self.stages = nn.ModuleList(
            Stage(dims[i], dims[i + 1], act_num, strides[i], deploy,
                  ada_pool[i] or None) for i in range(len(strides)))
        self.head = VanillaNetHead(dims[-1], num_classes, global_pool,
                                   drop_rate, deploy)
        self.feature_info = [
            dict(num_chs=dims[i + 1], reduction=r, module=f'stages.{i}')
            for i, r in enumerate(stage_reductions(self.arch))]
        self.apply(_init_conv)
        # persistent: a saved model carries λ (official weights: see
        # checkpoint_filter_fn)
        self.register_buffer('_act_learn', torch.tensor(float(act_learn)))
        self.set_act_learn(1.0 if deploy else act_learn)
        self.set_act_impl(act_impl)

    # ------------------------------------------------------- λ, layout
    @property
    def deploy(self) -> bool:
        """Whether stem, stages and head are all fused."""
        return all(m.deploy for m in (self.stem, *self.stages, self.head))

    @property
    def layout(self) -> str:
        return 'deploy' if self.deploy else 'training'

    @property
    def act_learn(self) -> float:
        """λ, the leaky-ReLU slope between each pair of convs."""
        return self._act_learn_value

    def set_act_learn(self, value: float) -> None:
        """Set λ on the stem, every stage and the head."""
        self._act_learn_value = float(value)  # a float: no sync in forward
        self._act_learn.fill_(self._act_learn_value)
        for m in (self.stem, *self.stages, self.head):
            m.act_learn = self._act_learn_value

    def set_act_impl(self, impl: str) -> None:
        """Choose the fused activation's implementation for every layer."""
        self.act_impl = set_act_impl(self, impl)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + '_act_learn' in state_dict:
            self.set_act_learn(self._act_learn.item())

    # -------------------------------------------------- timm's contract
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Stem, then one group per stage; the head comes last."""
        return dict(stem=r'^stem', blocks=r'^stages\.(\d+)')

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The head: pool, dropout and both class-dependent convs."""
        return self.head

    def reset_classifier(self, num_classes: int,
                         global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def _run_stage(self, stage: nn.Module, x: Tensor) -> Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(stage, x)
        return stage(x)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = self._run_stage(stage, x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
            self, x: Tensor, indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False, stop_early: bool = False,
            output_fmt: str = 'NCHW', intermediates_only: bool = False
    ) -> Union[List[Tensor], Tuple[Tensor, List[Tensor]]]:
        """timm's feature API: the outputs of the stages ``indices`` (an int
        n: the last n). There is no final norm, so ``norm`` has no effect."""
        if output_fmt != 'NCHW':
            raise ConfigError(
                f'VanillaNet features are NCHW, not {output_fmt}')
        take, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages[:max_index + 1] if stop_early else self.stages
        intermediates = []
        x = self.stem(x)
        for i, stage in enumerate(stages):
            x = self._run_stage(stage, x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
            self, indices: Union[int, List[int]] = 1,
            prune_norm: bool = False, prune_head: bool = True) -> List[int]:
        """Drop the stages after the last of ``indices`` (and the head)."""
        take, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[:max_index + 1]
        self.feature_info = self.feature_info[:max_index + 1]
        if prune_head:
            self.num_features = self.head_hidden_size = \
                self.head.in_features = self.feature_info[-1]['num_chs']
            self.reset_classifier(0, '')
        return take

    # ----------------------------------------------------------- fusion
    @torch.no_grad()
    def switch_to_deploy(self, force: bool = False) -> None:
        """Fuse stem, stages and head in place (idempotent). Exact only at
        λ = 1: refused otherwise, before anything changes, unless
        ``force=True`` (fuses as if λ = 1, changing the function).
        ``timm.utils.reparameterize_model`` gets the same by calling each
        child's ``switch_to_deploy``."""
        if self.deploy:
            return
        check_fusable(self.act_learn, force,
                      'VanillaNetClassifier.switch_to_deploy()')
        for m in (self.stem, *self.stages, self.head):
            m.switch_to_deploy(force)
        self.set_act_learn(1.0)


#: official key prefix -> this model's, for each official layout
_OFFICIAL_KEYS = {
    'training': (('stem1.', 'stem.conv1.'), ('stem2.0.', 'stem.conv2.0.'),
                 ('stem2.1.', 'stem.conv2.1.'), ('stem2.2.', 'stem.act.'),
                 ('cls1.2.', 'head.fc1.'), ('cls1.3.', 'head.norm.'),
                 ('cls2.0.', 'head.fc2.')),
    'deploy': (('stem.0.', 'stem.conv.'), ('stem.1.', 'stem.act.'),
               ('cls.2.', 'head.fc.')),
}


def _official_layout(state_dict: dict) -> Optional[str]:
    if 'stem1.0.weight' in state_dict:
        return 'training'
    if 'stem.0.weight' in state_dict and 'stem.1.bias' in state_dict \
            and 'stem.1.running_var' not in state_dict:
        return 'deploy'
    return None


def checkpoint_filter_fn(state_dict: dict,
                         model: VanillaNetClassifier) -> dict:
    """An official VanillaNet checkpoint (training or deploy form, the
    state dict or ``{'model'|'model_ema'|'state_dict': sd}``, keys maybe
    prefixed ``module.``) as this model's state dict.

    timm's convention (``pretrained_filter_fn``): stem and head keys are
    renamed, the stages' are the official ones. Official weights hold no λ:
    they are the λ = 1 network. A head of another size is dropped (timm
    then loads the rest with ``num_classes`` different). A state dict
    already in this model's keys passes as it is. The layout must be the
    model's: a deploy checkpoint needs ``deploy=True``.
    """
    sd = next((state_dict[k] for k in ('state_dict', 'model', 'model_ema')
               if isinstance(state_dict.get(k), dict)), state_dict)
    sd = {k.removeprefix('module.'): v for k, v in sd.items()}
    if 'stem.conv1.0.weight' in sd or 'stem.conv.weight' in sd:
        return sd
    layout = _official_layout(sd)
    if layout is None:
        raise ConfigError(
            'not an official VanillaNet checkpoint (no stem1.0.weight, or '
            'stem.0/stem.1 of the deploy form; a merged "shallow" one must '
            f'be fused first); first keys: {sorted(sd)[:8]}')
    if layout != model.layout:
        raise ConfigError(
            f'the checkpoint holds the {layout} form but the model is built '
            f"in the {model.layout} form; create it with "
            f"deploy={layout == 'deploy'}")
    out = {}
    for k, v in sd.items():
        old, new = next((p for p in _OFFICIAL_KEYS[layout]
                         if k.startswith(p[0])), ('', ''))
        out[new + k[len(old):]] = v
    out.setdefault('_act_learn', torch.tensor(1.0))
    own = model.state_dict()
    head = [k for k in out if k.startswith('head.')]
    if any(k not in own or own[k].shape != out[k].shape for k in head):
        out = {k: v for k, v in out.items() if not k.startswith('head.')}
    return out


def _cfg(**kwargs) -> dict:
    return {**dict(url='', num_classes=1000, input_size=(3, 224, 224),
                   pool_size=(7, 7), crop_pct=0.875, interpolation='bicubic',
                   mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                   **CFG_NAMES['training']), **kwargs}


# the ada-pool variant pools its last stages to 10x10 whatever the input
default_cfgs = generate_default_cfgs({
    name: _cfg(pool_size=(10, 10), fixed_input_size=True)
    if arch.get('ada_pool') else _cfg()
    for name, arch in ARCH_SETTINGS.items()})


def _create(variant: str, pretrained: bool = False, **kwargs):
    kwargs.setdefault('arch', variant)  # a dict gives custom widths
    if kwargs.get('deploy'):  # the fused form names its own convs
        kwargs['pretrained_cfg_overlay'] = {
            **CFG_NAMES['deploy'], **(kwargs.get('pretrained_cfg_overlay')
                                      or {})}
    out_indices = multiscale_out_indices(resolve_arch(kwargs['arch']))
    # features_only: timm's FeatureGetterNet around the whole model (its
    # forward_intermediates), so the λ-leaky stem and fusion stay intact
    return build_model_with_cfg(
        VanillaNetClassifier, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=out_indices),
        **kwargs)


# One entry point per variant, written out so that grep finds each name
# (tests/models/test_timm.py: exactly the keys of VanillaNet.arch_settings).


@register_model
def vanillanet_5(pretrained=False, **kwargs):
    return _create('vanillanet_5', pretrained, **kwargs)


@register_model
def vanillanet_6(pretrained=False, **kwargs):
    return _create('vanillanet_6', pretrained, **kwargs)


@register_model
def vanillanet_7(pretrained=False, **kwargs):
    return _create('vanillanet_7', pretrained, **kwargs)


@register_model
def vanillanet_8(pretrained=False, **kwargs):
    return _create('vanillanet_8', pretrained, **kwargs)


@register_model
def vanillanet_9(pretrained=False, **kwargs):
    return _create('vanillanet_9', pretrained, **kwargs)


@register_model
def vanillanet_10(pretrained=False, **kwargs):
    return _create('vanillanet_10', pretrained, **kwargs)


@register_model
def vanillanet_11(pretrained=False, **kwargs):
    return _create('vanillanet_11', pretrained, **kwargs)


@register_model
def vanillanet_12(pretrained=False, **kwargs):
    return _create('vanillanet_12', pretrained, **kwargs)


@register_model
def vanillanet_13(pretrained=False, **kwargs):
    return _create('vanillanet_13', pretrained, **kwargs)


@register_model
def vanillanet_13_x1_5(pretrained=False, **kwargs):
    return _create('vanillanet_13_x1_5', pretrained, **kwargs)


@register_model
def vanillanet_13_x1_5_ada_pool(pretrained=False, **kwargs):
    return _create('vanillanet_13_x1_5_ada_pool', pretrained, **kwargs)
