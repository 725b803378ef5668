"""VanillaNet classifiers in timm's registry (``timm.create_model``).

The body is :class:`VanillaNet`; this adds the official head so official
ImageNet checkpoints load with their exact keys::

    timm.create_model('vanillanet_13', pretrained=True, num_classes=10,
                      pretrained_cfg_overlay=dict(file='vanillanet_13.pth'))

timm's machinery works on it: ``timm.utils.reparameterize_model(model)``
fuses the whole classifier (stem, stages, head; refused at λ ≠ 1), and
``features_only=True, out_indices=(0, 1, 8, 10)`` gives the stage outputs
(indices as the backbone's ``out_indices``) with timm's ``feature_info``.
"""
import copy
import math
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
)
from timm.models._features import feature_take_indices
from torch import Tensor, nn

from ..utils.errors import ConfigError
from .backbone import DEFAULT_NORM_CFG, VanillaNet
from .blocks import conv_from
from .checkpoint import (
    ACT_LEARN_KEY,
    check_compatible,
    extract_state_dict,
    to_backbone_state_dict,
)
from .fusion import fuse_conv_bn, merge_pointwise


class _FuseOwner(nn.Module):
    """Lets ``timm.utils.reparameterize_model`` fuse its owner as a whole.

    That function calls ``reparameterize()`` on the *children* of a model,
    never on the model itself, so on its own it would fuse the stages but
    not the stem or the head (both span two sibling modules). This child,
    first in registration order, calls the owner's guarded
    ``switch_to_deploy()``; the owner's children are re-homed in a copied
    dict first, since timm is iterating over the original one.
    """

    def __init__(self, owner: nn.Module):
        super().__init__()
        object.__setattr__(self, 'owner', owner)  # not a submodule: no cycle

    def reparameterize(self) -> None:
        owner = self.owner
        owner._modules = copy.copy(owner._modules)
        owner.switch_to_deploy()

    def forward(self, x: Tensor) -> Tensor:
        return x


class VanillaNetClassifier(VanillaNet):
    """VanillaNet with the official head: pool, dropout, conv-BN, λ-leaky,
    conv (training form) or pool, dropout, conv (deploy form).

    λ (``act_learn``) defaults to 1, the value an ImageNet-trained model
    ends at; fine-tuning with deep training sets it explicitly.
    """

    fixed_input_size = True  # the official ada-pool variant is a classifier

    def __init__(self, arch: str = 'vanillanet_13', num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0., act_num: int = 3,
                 deploy: bool = False, act_learn: float = 1.0, **kwargs):
        super().__init__(arch, in_channels=in_chans, act_num=act_num,
                         out_indices=(-1, ), deploy=deploy,
                         act_learn=act_learn, **kwargs)
        # first child, so that reparameterize_model fuses everything at once
        self._modules = {'reparam': _FuseOwner(self), **self._modules}
        # every stage's output (forward_intermediates); the head takes the last
        self.out_indices = list(range(self.num_stages))
        self.out_channels = self.arch['dims'][1:]
        self.feature_info = _feature_info(self.arch, self._stem_conv['stride'])
        self.num_classes = num_classes
        self.num_features = self.out_channels[-1]
        self.drop_rate = drop_rate
        pool_drop = [nn.AdaptiveAvgPool2d(1), nn.Dropout(drop_rate)]
        conv = nn.Conv2d(self.num_features, num_classes, 1)
        if deploy:
            self.cls = nn.Sequential(*pool_drop, conv)
        else:
            self.cls1 = nn.Sequential(
                *pool_drop, conv, build_norm_layer(DEFAULT_NORM_CFG,
                                                   num_classes)[1])
            self.cls2 = nn.Sequential(nn.Conv2d(num_classes, num_classes, 1))

    def forward_features(self, x: Tensor) -> Tensor:
        return super().forward(x)[-1]

    def forward_head(self, x: Tensor) -> Tensor:
        if self.num_classes == 0:  # pruned for features_only
            return F.adaptive_avg_pool2d(x, 1).flatten(1)
        if self.deploy:
            x = self.cls(x)
        else:
            x = self.cls2(F.leaky_relu(self.cls1(x), self.act_learn))
        return x.flatten(1)

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
        take, _ = feature_take_indices(self.num_stages, indices)
        feats = super().forward(x)
        intermediates = [feats[i] for i in take]
        return intermediates if intermediates_only else (feats[-1],
                                                         intermediates)

    def prune_intermediate_layers(
            self, indices: Union[int, List[int]] = 1,
            prune_norm: bool = False, prune_head: bool = True) -> List[int]:
        """Drop the stages after the last of ``indices`` (and the head)."""
        take, max_index = feature_take_indices(self.num_stages, indices)
        self.stages = self.stages[:max_index + 1]
        self.num_stages = max_index + 1
        self.out_indices = self.out_indices[:max_index + 1]
        self.out_channels = self.out_channels[:max_index + 1]
        self.feature_info = self.feature_info[:max_index + 1]
        if prune_head:
            for name in ('cls', 'cls1', 'cls2'):
                if hasattr(self, name):
                    delattr(self, name)
            self.num_classes = 0
        return take

    @torch.no_grad()
    def switch_to_deploy(self, force: bool = False) -> None:
        if self.deploy:
            return
        super().switch_to_deploy(force)
        if self.num_classes == 0:
            return
        conv, bn, out = self.cls1[2], self.cls1[3], self.cls2[0]
        weight, bias = merge_pointwise(
            *fuse_conv_bn(conv.weight, conv.bias, bn), out.weight, out.bias)
        self.cls = nn.Sequential(*self.cls1[:2], conv_from(weight, bias))
        del self.cls1, self.cls2


def _feature_info(arch: dict, stem_stride: int) -> List[dict]:
    """timm's feature_info: one entry per stage (index = stage index).

    The ada-pool variant pools to fixed sizes; its reductions are nominal.
    """
    strides = arch['strides']
    return [dict(num_chs=arch['dims'][i + 1], module=f'stages.{i}',
                 reduction=stem_stride * math.prod(strides[:i + 1]))
            for i in range(len(strides))]


def checkpoint_filter_fn(state_dict: dict, model: VanillaNetClassifier):
    """Official checkpoint → this model; a head of another size is dropped."""
    sd = to_backbone_state_dict(extract_state_dict(state_dict),
                                keep_head=True)
    sd.setdefault(ACT_LEARN_KEY, torch.tensor(1.0))  # trained to λ = 1
    own = model.state_dict()
    head = {k for k in sd if k.startswith(('cls1.', 'cls2.', 'cls.'))}
    if any(k not in own or own[k].shape != sd[k].shape for k in head):
        sd = {k: v for k, v in sd.items() if k not in head}
    check_compatible(model, {**{k: v for k, v in own.items()
                                if k.startswith(('cls', ))}, **sd})
    return sd


def _cfg(**kwargs) -> dict:
    return dict(url='', num_classes=1000, input_size=(3, 224, 224),
                pool_size=(7, 7), crop_pct=0.875, interpolation='bicubic',
                mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                first_conv='stem1.0', classifier=('cls1.2', 'cls2.0'),
                **kwargs)


default_cfgs = generate_default_cfgs(
    {name: _cfg() for name in VanillaNet.arch_settings})


def _create(variant: str, pretrained: bool = False, **kwargs):
    kwargs.setdefault('arch', variant)  # a dict gives custom widths
    out_indices = VanillaNet.multiscale_out_indices(kwargs['arch'])
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
