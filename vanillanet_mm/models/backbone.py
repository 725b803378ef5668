"""The VanillaNet backbone for MMDetection / MMSegmentation."""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.errors import ConfigError
from .arch import (
    ARCH_SETTINGS,
    check_act_num,
    multiscale_out_indices,
    resolve_arch,
    stem_conv,
)
from .blocks import (
    NormLayer,
    SeriesActivation,
    Stage,
    check_fusable,
    conv_norm,
    fold_norm,
    merge_deep_pair,
    set_act_impl,
)
from .checkpoint import (
    ACT_LEARN_KEY,
    check_layout,
    layout_at,
    load_pretrained,
)

DEFAULT_NORM_CFG = dict(type='BN', eps=1e-6, requires_grad=True)


def check_norm_cfg(norm_cfg: dict) -> None:
    """Fusion folds BatchNorm running statistics into the convs: refuse any
    other norm when the model is built, not when it is fused."""
    layer = norm_cfg.get('type')
    if isinstance(layer, str):
        with MODELS.switch_scope_and_registry(None) as registry:
            layer = registry.get(layer)
    if not (isinstance(layer, type) and issubclass(layer, _BatchNorm)
            and norm_cfg.get('track_running_stats', True)):
        raise ConfigError(
            f'VanillaNet norm_cfg {norm_cfg!r} cannot be fused: fusion folds '
            'BatchNorm running statistics into the convs; use '
            "type='BN' (or 'SyncBN' on several GPUs) with running statistics")


def norm_layer_from(norm_cfg: dict) -> NormLayer:
    """The blocks' ``norm_layer`` factory for mmcv's ``norm_cfg``."""
    return lambda channels: build_norm_layer(norm_cfg, channels)[1]


@MODELS.register_module()
class VanillaNet(BaseModule):
    """VanillaNet (Chen et al., 2023): deep training, series activation,
    fusion.

    ``dims[0]`` is the stem width, ``dims[i + 1]`` the output width of stage i.

    Args:
        arch (str | dict): a key of :attr:`arch_settings` or a dict with
            ``dims`` and ``strides`` (optionally ``ada_pool``, a per-stage
            list of adaptive max-pool sizes, 0 meaning a plain pool).
            Defaults to ``'vanillanet_13'``.
        in_channels (int): input channels. Defaults to 3.
        act_num (int): series activation radius n; depthwise kernel
            (2n+1)². ImageNet models use 3, the official detection config 4.
            Defaults to 3.
        out_indices (Sequence[int | str]): stage indices to return
            (negative count from the end); ``'stem'`` adds the stem output
            (stride 4), useful for variants whose first stage already has
            stride 2 (VN5/VN6). :meth:`multiscale_out_indices` gives the
            last stage of each resolution. Defaults to ``(-1, )``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and
            stages 0..k-1 (eval mode, no gradients). Defaults to -1.
        norm_eval (bool): keep every norm layer in eval mode while
            training. Defaults to False.
        norm_cfg (dict): norm layers; BN eps 1e-6 as upstream, SyncBN for
            multi-GPU. Defaults to ``dict(type='BN', eps=1e-6,
            requires_grad=True)``.
        deploy (bool): build the fused (inference) form directly.
            Defaults to False.
        deep_training (bool): train each stage (and the stem) as the deep
            pair conv-BN, λ-leaky ReLU, conv-BN. False builds the shallow
            form, one conv-BN each: the paper's "without deep training"
            baseline, and what :meth:`switch_to_shallow` turns a deep model
            into at λ = 1. Defaults to True.
        act_learn (float): initial λ (see "λ rule" below). Defaults to 1.0.
        with_cp (bool): gradient checkpointing of each stage (saves
            memory). Defaults to False.
        act_impl (str): how the deploy form runs its series activations:
            ``'auto'`` (the fused Triton kernel on CUDA, PyTorch ops
            elsewhere; the env var ``VANILLANET_ACT_IMPL`` overrides),
            ``'triton'`` or ``'torch'``. See
            :mod:`vanillanet_mm.ops.series_act`. Defaults to ``'auto'``.
        channels_last (bool): run in the channels_last memory format (the
            input is converted; every feature map follows): GPU tensor
            cores run the 1x1 convs without transposes. Defaults to False.
        pretrained (str, optional): shorthand for
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``
            (mmseg passes ``model.pretrained`` here). Defaults to None.
        init_cfg (dict | list[dict], optional): mmengine init config.
            ``dict(type='Pretrained', checkpoint=PATH)`` accepts official
            ImageNet or mmdet checkpoints and this project's (see
            :mod:`vanillanet_mm.models.checkpoint`); ``entry='model_ema'``
            picks that entry of an official ImageNet checkpoint (as the
            official detection recipe does); ``act_num_from=3`` loads an
            act_num-3 checkpoint (the official ImageNet VN5-12) into an
            act_num-4 model, its kernels zero-padded (exact). None trains
            from scratch with
            upstream's init (conv weights truncated normal, std 0.02).
            Defaults to None.

    λ rule (the one place it is defined):

    - λ = 1 is the network the official weights compute: ImageNet models
      finish deep training at λ = 1 and the official detection code has no λ
      at all. So a freshly built model has λ = 1 (``act_learn=1.0``), and
      :class:`DeepTrainingHook` sets the start value (0 from scratch) when
      training begins.
    - Our checkpoints carry λ (the buffer ``_act_learn``) and restore it.
    - A state dict that holds this backbone's weights but no ``_act_learn``
      is an official one and sets λ = 1, whichever way it is loaded
      (``init_cfg`` Pretrained, Runner ``load_from``, mmengine's
      ``load_checkpoint``, ``load_state_dict`` strict or not).

    Layout rule: the arguments decide the layout (``layout``: training,
    shallow or deploy), never a checkpoint. Weights in another layout are
    refused on every load path above with one line naming the argument
    that builds theirs (``deep_training=False`` for a merged checkpoint,
    ``deploy=True`` for a fused one): mmengine's Runner holds the
    parameters in DDP and the optimizer before it loads weights, so a
    structure switched at load time would train parameters nobody
    optimizes. The one change of structure in a run is
    ``DeepTrainingHook(fuse_at_end=True)``'s merge, which that hook also
    replays when ``--resume`` continues a merged run; ``tools/test.py``,
    ``tools/infer.py`` and ``to-deploy`` build a merged checkpoint's
    backbone shallow (:func:`vanillanet_mm.apis.follow_merged_checkpoint`).
    ``arch='vanillanet_13_x1_5_ada_pool'`` (fixed-size pools) and norms
    without BatchNorm running statistics (no fusion) are refused here.
    """

    #: whether ``arch`` may pool adaptively to fixed sizes (the ada-pool
    #: variant): only a classifier at its training resolution may
    fixed_input_size: bool = False

    arch_settings: Dict[str, dict] = ARCH_SETTINGS

    def __init__(self,
                 arch: Union[str, dict] = 'vanillanet_13',
                 in_channels: int = 3,
                 act_num: int = 3,
                 out_indices: Sequence[Union[int, str]] = (-1, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: dict = DEFAULT_NORM_CFG,
                 deploy: bool = False,
                 deep_training: bool = True,
                 act_learn: float = 1.0,
                 with_cp: bool = False,
                 act_impl: str = 'auto',
                 channels_last: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        if pretrained is not None:  # mmseg's `model.pretrained` convention
            if init_cfg is not None:
                raise ConfigError('give VanillaNet either init_cfg or '
                                 'pretrained, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:  # from scratch: as upstream's classifier
            init_cfg = dict(type='TruncNormal', layer='Conv2d', std=.02,
                            bias=0.)
        super().__init__(init_cfg=init_cfg)
        self.arch = self._resolve_arch(arch)
        if self.arch.get('ada_pool') and not self.fixed_input_size:
            raise ConfigError(
                f'arch {arch if isinstance(arch, str) else "dict"!r} pools '
                f"to fixed sizes ({self.arch['ada_pool']}) whatever the "
                'input, so feature maps lose their stride (FPN, anchors and '
                'decode heads need it); for detection or segmentation use '
                "'vanillanet_13_x1_5' (the same widths and weights), for "
                "classification timm.create_model('vanillanet_13_x1_5_ada_"
                "pool')")
        if not deploy:
            check_norm_cfg(norm_cfg)
        dims, strides = self.arch['dims'], self.arch['strides']
        ada_pool = self.arch.get('ada_pool') or [0] * len(strides)
        check_act_num(act_num)
        num_stages = len(strides)
        if not -1 <= frozen_stages <= num_stages:
            raise ConfigError(f'frozen_stages must be in [-1, {num_stages}] '
                             f'for this arch, got {frozen_stages}')
        self.in_channels = in_channels
        self.act_num = act_num
        self.num_stages = num_stages
        self.out_indices = self._resolve_out_indices(out_indices, num_stages)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.channels_last = channels_last
        self.deploy = deploy
        self.deep = deep_training and not deploy

        norm_layer = norm_layer_from(norm_cfg)
        # The stem sits at the top level so that state dicts use the
        # official key names (stem1/stem2, or stem in the deploy form).
        self._stem_conv = stem_conv(self.arch)
        if deploy:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, dims[0], **self._stem_conv),
                SeriesActivation(dims[0], act_num, deploy=True))
        elif self.deep:
            self.stem1 = conv_norm(in_channels, dims[0], norm_layer,
                                   **self._stem_conv)
            self.stem2 = nn.Sequential(
                *conv_norm(dims[0], dims[0], norm_layer),
                SeriesActivation(dims[0], act_num, norm_layer=norm_layer))
        else:
            self.stem = nn.Sequential(
                *conv_norm(in_channels, dims[0], norm_layer,
                           **self._stem_conv),
                SeriesActivation(dims[0], act_num, norm_layer=norm_layer))
        self.stages = nn.ModuleList(
            Stage(dims[i], dims[i + 1], act_num, strides[i], deploy,
                  ada_pool[i] or None, norm_layer, self.deep)
            for i in range(num_stages))
        # Persistent, so our checkpoints (and resumed runs) carry λ.
        self.register_buffer('_act_learn', torch.tensor(float(act_learn)))
        self.set_act_learn(1.0 if deploy else act_learn)
        self.out_channels = [dims[0] if i == 'stem' else dims[i + 1]
                             for i in self.out_indices]
        self.total_stride = (self._stem_conv['stride']
                             if self.arch.get('ada_pool') else
                             4 * math.prod(strides))
        self.set_act_impl(act_impl)
        self._freeze_stages()

    # ----------------------------------------------------------- arguments
    @classmethod
    def _resolve_arch(cls, arch: Union[str, dict]) -> dict:
        return resolve_arch(arch, cls.arch_settings)

    @classmethod
    def multiscale_out_indices(cls, arch: Union[str, dict]
                               ) -> Tuple[int, ...]:
        """The last stage of each resolution: for VN13 (0, 1, 8, 10), the
        official detection config's /4, /8, /16, /32 outputs."""
        return multiscale_out_indices(cls._resolve_arch(arch))

    @staticmethod
    def _resolve_out_indices(out_indices, num_stages) -> List[Union[int, str]]:
        if isinstance(out_indices, (int, str)):
            out_indices = [out_indices]
        resolved = []
        for idx in out_indices:
            if idx == 'stem':
                resolved.append('stem')
                continue
            if not isinstance(idx, int) or not -num_stages <= idx < num_stages:
                raise ConfigError(
                    f'out_indices entry {idx!r} is out of range: this arch '
                    f'has '
                    f'{num_stages} stages, use 0..{num_stages - 1} (negative '
                    "from the end) or 'stem'")
            resolved.append(idx % num_stages)
        return resolved

    # ------------------------------------------------------------------ λ
    @property
    def layout(self) -> str:
        """'training' (deep pairs), 'shallow' (one conv-BN) or 'deploy'."""
        if self.deploy:
            return 'deploy'
        return 'training' if self.deep else 'shallow'

    @property
    def act_learn(self) -> float:
        """λ, the leaky-ReLU slope between each pair of convs (1 = linear)."""
        return self._act_learn_value

    def set_act_learn(self, value: float) -> None:
        """Set λ on the stem and every stage (the paper's ``act_learn``)."""
        value = float(value)
        self._act_learn_value = value  # a float: no device sync in forward
        self._act_learn.fill_(value)
        for stage in self.stages:
            stage.act_learn = value

    def set_act_impl(self, impl: str) -> None:
        """Choose the deploy-form activation: 'auto', 'triton', 'torch'."""
        self.act_impl = set_act_impl(self, impl)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Every loader (torch's and mmengine's) calls this hook per module, so
        # the λ rule and the layout rule hold on every load path.
        src = layout_at(state_dict, prefix)
        if src is not None:
            check_layout(self.layout, src, "the checkpoint's VanillaNet "
                         f"{prefix.rstrip('.') or '(root)'}",
                         'build it with ')
        key = prefix + ACT_LEARN_KEY
        if key not in state_dict and src is not None:
            state_dict = {**state_dict, key: torch.tensor(1.0)}
            print_log(f'VanillaNet {prefix.rstrip(".") or "(root)"}: weights '
                      'without act_learn (an official checkpoint) -> λ = 1',
                      logger='current')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if key in state_dict:
            self.set_act_learn(self._act_learn.item())

    # ------------------------------------------------------------- forward
    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f'VanillaNet expects input (N, {self.in_channels}, H, W), got '
                f'{tuple(x.shape)}; set in_channels= to match your data')
        if min(x.shape[-2:]) < self.total_stride:
            raise ConfigError(
                f'input {tuple(x.shape[-2:])} is smaller than the total '
                f'stride '
                f'{self.total_stride} of this arch; resize or pad the input')

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        self._check_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.deep:
            x = self.stem2(F.leaky_relu(self.stem1(x), self.act_learn))
        else:
            x = self.stem(x)
        feats = {'stem': x}
        for i, stage in enumerate(self.stages):
            if self.with_cp and self.training and x.requires_grad:
                x = cp.checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
            feats[i] = x
        return tuple(feats[idx] for idx in self.out_indices)

    # -------------------------------------------------------------- fusion
    @torch.no_grad()
    def switch_to_shallow(self, force: bool = False) -> None:
        """Merge every deep pair into one conv-BN, in place (idempotent).

        The result still trains (the second pair's BN is kept) and equals
        the deep network in eval mode. Exact only at λ = 1, like
        :meth:`switch_to_deploy`; ``force=True`` merges as if λ were 1.
        """
        if not self.deep:
            return
        check_fusable(self.act_learn, force, 'switch_to_shallow()')
        self.stem = nn.Sequential(*merge_deep_pair(self.stem1, self.stem2[:2]),
                                  self.stem2[2])
        del self.stem1, self.stem2
        for stage in self.stages:
            stage.switch_to_shallow(force)
        self.deep = False
        self.set_act_learn(1.0)
        self._freeze_stages()

    @torch.no_grad()
    def switch_to_deploy(self, force: bool = False) -> None:
        """Fuse in place into the inference form (idempotent).

        Exact only at λ = 1 (the leaky ReLU between the convs is then the
        identity). Otherwise this raises, unless ``force=True``, which fuses
        as if λ were 1 and so changes the network's function.
        """
        if self.deploy:
            return
        self.switch_to_shallow(force)
        act = self.stem[2]
        act.switch_to_deploy()
        self.stem = nn.Sequential(fold_norm(self.stem[:2]), act)
        for stage in self.stages:
            stage.switch_to_deploy(force)
        self.deploy = True
        self.set_act_learn(1.0)
        self._freeze_stages()

    # ------------------------------------------------- freezing / training
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        stem = [self.stem1, self.stem2] if self.deep else [self.stem]
        frozen = [*stem, *self.stages[:self.frozen_stages]]
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------ weights
    def init_weights(self) -> None:
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            load_pretrained(self, init_cfg['checkpoint'],
                            prefix=init_cfg.get('prefix'),
                            entry=init_cfg.get('entry'),
                            act_num_from=init_cfg.get('act_num_from'))
            self._is_init = True
            return
        super().init_weights()
