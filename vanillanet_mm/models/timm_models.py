"""VanillaNet classifiers in timm's registry (``timm.create_model``).

The body is :class:`VanillaNet`; this adds the official head so official
ImageNet checkpoints load with their exact keys::

    timm.create_model('vanillanet_13', pretrained=True, num_classes=10,
                      pretrained_cfg_overlay=dict(file='vanillanet_13.pth'))
"""
import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models import register_model
from torch import Tensor, nn

from .backbone import VanillaNet
from .blocks import DEFAULT_NORM_CFG, conv_from
from .checkpoint import (ACT_LEARN_KEY, check_compatible, extract_state_dict,
                         to_backbone_state_dict)
from .fusion import fuse_conv_bn, merge_pointwise


class VanillaNetClassifier(VanillaNet):
    """VanillaNet with the official head: pool, dropout, conv-BN, λ-leaky,
    conv (training form) or pool, dropout, conv (deploy form)."""

    def __init__(self, arch: str = 'vanillanet_13', num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0., act_num: int = 3,
                 deploy: bool = False, act_learn: float = 0.0, **kwargs):
        super().__init__(arch, in_channels=in_chans, act_num=act_num,
                         out_indices=(-1, ), deploy=deploy,
                         act_learn=act_learn, **kwargs)
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
        if self.deploy:
            x = self.cls(x)
        else:
            x = self.cls2(F.leaky_relu(self.cls1(x), self.act_learn))
        return x.flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def switch_to_deploy(self, force: bool = False) -> None:
        if self.deploy:
            return
        super().switch_to_deploy(force)
        conv, bn, out = self.cls1[2], self.cls1[3], self.cls2[0]
        weight, bias = merge_pointwise(*fuse_conv_bn(conv.weight, conv.bias, bn),
                                       out.weight, out.bias)
        self.cls = nn.Sequential(*self.cls1[:2], conv_from(weight, bias))
        del self.cls1, self.cls2


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
    return build_model_with_cfg(
        VanillaNetClassifier, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=False), **kwargs)


def _register(variant: str):
    def entrypoint(pretrained: bool = False, **kwargs):
        return _create(variant, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = variant
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f'VanillaNet classifier, arch {variant!r}.'
    return register_model(entrypoint)


for _variant in VanillaNet.arch_settings:
    globals()[_variant] = _register(_variant)
