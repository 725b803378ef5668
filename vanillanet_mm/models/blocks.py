"""VanillaNet's building blocks: series activation and stage.

Parameter names follow the official code so official checkpoints load as is:
training form ``stem1``/``stem2``, ``conv1``/``conv2``, ``act.weight``,
``act.bn``; deploy form ``stem``, ``conv``, ``act.weight``/``act.bias``.
The shallow form (one conv + BN per stage, still trainable: the paper's
network without deep training, or a deep one merged at λ = 1) names them
``stem.0``/``stem.1``/``stem.2`` and ``conv.0``/``conv.1``.

torch and timm only (no OpenMMLab import): the timm classifiers are built
from these too. A block takes its norm as ``norm_layer``, a factory
``channels -> module``; the mmengine backbone passes one built from its
``norm_cfg``.
"""
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn

from ..ops import check_impl, series_act
from ..utils.errors import FusionError
from .fusion import fuse_conv_bn, merge_pointwise

NormLayer = Callable[[int], nn.Module]


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """The official norm: BatchNorm with eps 1e-6."""
    return nn.BatchNorm2d(channels, eps=1e-6)


def conv_norm(in_ch: int, out_ch: int, norm_layer: NormLayer = batch_norm,
              **conv_kwargs) -> nn.Sequential:
    """``Sequential(conv, norm)``: keys ``.0.*`` and ``.1.*`` as upstream."""
    conv_kwargs.setdefault('kernel_size', 1)
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, **conv_kwargs),
                         norm_layer(out_ch))


def conv_from(weight: torch.Tensor, bias: torch.Tensor, stride=1,
              padding=0) -> nn.Conv2d:
    """An ``nn.Conv2d`` holding the given (fused) weight and bias."""
    out_ch, in_ch, kh, kw = weight.shape
    conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride, padding).to(weight)
    conv.weight.data.copy_(weight)
    conv.bias.data.copy_(bias)
    return conv


def merge_deep_pair(first: nn.Sequential,
                    second: nn.Sequential) -> nn.Sequential:
    """``Sequential(conv, BN)`` computing ``second ∘ first`` at λ = 1.

    ``first``'s BN (eval statistics) and ``second``'s conv fold into one conv;
    ``second``'s BN is kept as it is, so the merged pair still normalises
    with batch statistics while it trains and equals the pair in eval mode.
    """
    return nn.Sequential(merge_conv_norm_conv(*first, second[0]), second[1])


def merge_conv_norm_conv(conv: nn.Conv2d, norm: nn.Module,
                         pointwise: nn.Conv2d) -> nn.Conv2d:
    """One conv computing ``pointwise(norm(conv(x)))``, ``norm`` an eval-mode
    BatchNorm and ``pointwise`` a 1x1 conv."""
    weight, bias = merge_pointwise(
        *fuse_conv_bn(conv.weight, conv.bias, norm), pointwise.weight,
        pointwise.bias)
    return conv_from(weight, bias, conv.stride, conv.padding)


def fold_norm(pair: nn.Sequential) -> nn.Conv2d:
    """One conv computing ``Sequential(conv, BN)`` in eval mode."""
    conv = pair[0]
    return conv_from(*fuse_conv_bn(conv.weight, conv.bias, pair[1]),
                     conv.stride, conv.padding)


def check_fusable(act_learn: float, force: bool, caller: str) -> None:
    """Fusion is exact only at λ = 1 (the leaky ReLU between the convs is
    then the identity): refuse otherwise, unless ``force``."""
    if act_learn != 1.0 and not force:
        raise FusionError(
            f'{caller} needs act_learn (λ) == 1, got {act_learn:g}: fusing '
            'now would change the network. Finish the λ anneal '
            '(DeepTrainingHook) or call it with force=True to fuse as if '
            'λ = 1.')


class SeriesActivation(nn.Module):
    """Series-informed activation: ReLU, then a (2·act_num+1)² depthwise conv.

    Training form: depthwise conv without bias, then BN. Deploy form: the BN
    folded into the depthwise conv (weight scale + ``bias``), run by
    :func:`vanillanet_mm.ops.series_act` (one Triton pass on CUDA;
    ``act_impl`` 'auto' | 'triton' | 'torch').
    """

    act_impl = 'auto'

    def __init__(self, channels: int, act_num: int = 3, deploy: bool = False,
                 norm_layer: NormLayer = batch_norm):
        super().__init__()
        self.channels = channels
        self.act_num = act_num
        self.deploy = deploy
        k = 2 * act_num + 1
        self.weight = nn.Parameter(torch.empty(channels, 1, k, k))
        trunc_normal_(self.weight, std=.02)
        if deploy:
            self.bias = nn.Parameter(torch.zeros(channels))
        else:
            self.bias = None
            self.bn = norm_layer(channels)

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return series_act(x, self.weight, self.bias, self.act_num,
                              self.act_impl)
        return self.bn(F.conv2d(F.relu(x), self.weight, None,
                                padding=self.act_num, groups=self.channels))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if self.deploy:
            return
        weight, bias = fuse_conv_bn(self.weight, None, self.bn)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        del self.bn
        self.deploy = True

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, act_num={self.act_num}, '
                f'deploy={self.deploy}')


def set_act_impl(model: nn.Module, impl: str) -> str:
    """Make every series activation in ``model`` run its fused form as
    ``impl`` ('auto', 'triton' or 'torch'); returns ``impl``, checked."""
    check_impl(impl)
    for m in model.modules():
        if isinstance(m, SeriesActivation):
            m.act_impl = impl
    return impl


class Stage(nn.Module):
    """One VanillaNet stage: 1x1 conv-BN, λ-leaky, 1x1 conv-BN, pool, act.

    ``stride`` 2 adds a max-pool (an adaptive max-pool to ``ada_pool`` pixels
    for the ada-pool variant); stride 1 keeps the resolution. ``deep=False``
    builds the shallow form: one 1x1 conv-BN instead of the pair.
    ``first_conv`` (conv arguments) makes the first conv map ``in_channels``
    straight to ``out_channels`` with that kernel: the stem (:class:`Stem`).
    """

    def __init__(self, in_channels: int, out_channels: int, act_num: int = 3,
                 stride: int = 2, deploy: bool = False,
                 ada_pool: Optional[int] = None,
                 norm_layer: NormLayer = batch_norm, deep: bool = True,
                 first_conv: Optional[dict] = None):
        super().__init__()
        self.deploy = deploy
        self.deep = deep and not deploy
        self.act_learn = 1.0  # the λ rule: see VanillaNet
        mid = in_channels if first_conv is None else out_channels
        first_conv = {'kernel_size': 1, **(first_conv or {})}
        if deploy:
            self.conv = nn.Conv2d(in_channels, out_channels, **first_conv)
        elif deep:
            self.conv1 = conv_norm(in_channels, mid, norm_layer, **first_conv)
            self.conv2 = conv_norm(mid, out_channels, norm_layer)
        else:
            self.conv = conv_norm(in_channels, out_channels, norm_layer,
                                  **first_conv)
        if stride == 1:
            self.pool = nn.Identity()
        elif ada_pool:
            self.pool = nn.AdaptiveMaxPool2d((ada_pool, ada_pool))
        else:
            self.pool = nn.MaxPool2d(stride)
        self.act = SeriesActivation(out_channels, act_num, deploy, norm_layer)

    def forward(self, x: Tensor) -> Tensor:
        if self.deep:
            x = self.conv2(F.leaky_relu(self.conv1(x), self.act_learn))
        else:
            x = self.conv(x)
        return self.act(self.pool(x))

    @torch.no_grad()
    def switch_to_shallow(self, force: bool = False) -> None:
        """Merge the deep pair into one trainable conv-BN (idempotent);
        exact at λ = 1, refused otherwise unless ``force``."""
        if not self.deep:
            return
        check_fusable(self.act_learn, force,
                      f'{type(self).__name__}.switch_to_shallow()')
        self.conv = merge_deep_pair(self.conv1, self.conv2)
        del self.conv1, self.conv2
        self.deep = False

    @torch.no_grad()
    def switch_to_deploy(self, force: bool = False) -> None:
        """Fuse in place (idempotent); like :meth:`VanillaNet.switch_to_deploy`
        it refuses at λ ≠ 1 unless ``force`` (fuse as if λ = 1), also when
        called on its own (e.g. by ``timm.utils.reparameterize_model``)."""
        if self.deploy:
            return
        self.switch_to_shallow(force)
        self.conv = fold_norm(self.conv)
        self.act.switch_to_deploy()
        self.deploy = True


class Stem(Stage):
    """The stem: a :class:`Stage` whose first conv is the 4x4 patchify conv
    (``in_chans`` -> ``out_channels``, stride 4; stride 3 padding 1 for the
    ada-pool variant), with no pool. Keys ``conv1``/``conv2``/``act`` in the
    training form, ``conv``/``act`` fused, as a stage's; it fuses itself
    (:meth:`switch_to_deploy`, refused at λ ≠ 1)."""

    def __init__(self, in_chans: int, out_channels: int, act_num: int = 3,
                 stride: int = 4, padding: int = 0, deploy: bool = False,
                 norm_layer: NormLayer = batch_norm, deep: bool = True):
        super().__init__(in_chans, out_channels, act_num, stride=1,
                         deploy=deploy, norm_layer=norm_layer, deep=deep,
                         first_conv=dict(kernel_size=4, stride=stride,
                                         padding=padding))
