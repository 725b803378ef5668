"""VanillaNet's variants: the one table of widths, strides and pools.

Plain Python (no torch, no OpenMMLab), shared by the mmengine backbone and
the timm classifiers.
"""
import math
from typing import Dict, List, Tuple, Union

from ..utils.errors import ConfigError


def _arch(dims, strides, ada_pool=None):
    return dict(dims=list(dims), strides=list(strides), ada_pool=ada_pool)


_VN13 = [512, 512, 1024] + [2048] * 7 + [4096, 4096]

#: ``dims[0]`` is the stem width, ``dims[i + 1]`` the output width of stage
#: i; ``ada_pool``: per-stage adaptive max-pool sizes (0: a plain pool).
ARCH_SETTINGS: Dict[str, dict] = {
    'vanillanet_5': _arch([512, 1024, 2048, 4096], [2, 2, 2]),
    'vanillanet_6': _arch([512, 1024, 2048, 4096, 4096], [2, 2, 2, 1]),
    'vanillanet_7': _arch([512, 512, 1024, 2048, 4096, 4096],
                          [1, 2, 2, 2, 1]),
    'vanillanet_8': _arch([512, 512, 1024, 2048, 2048, 4096, 4096],
                          [1, 2, 2, 1, 2, 1]),
    'vanillanet_9': _arch([512, 512, 1024] + [2048] * 3 + [4096, 4096],
                          [1, 2, 2, 1, 1, 2, 1]),
    'vanillanet_10': _arch([512, 512, 1024] + [2048] * 4 + [4096, 4096],
                           [1, 2, 2, 1, 1, 1, 2, 1]),
    'vanillanet_11': _arch([512, 512, 1024] + [2048] * 5 + [4096, 4096],
                           [1, 2, 2, 1, 1, 1, 1, 2, 1]),
    'vanillanet_12': _arch([512, 512, 1024] + [2048] * 6 + [4096, 4096],
                           [1, 2, 2, 1, 1, 1, 1, 1, 2, 1]),
    'vanillanet_13': _arch(_VN13, [1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1]),
    'vanillanet_13_x1_5': _arch([d * 3 // 2 for d in _VN13],
                                [1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1]),
    'vanillanet_13_x1_5_ada_pool': _arch(
        [d * 3 // 2 for d in _VN13], [1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1],
        ada_pool=[0, 38, 19, 0, 0, 0, 0, 0, 0, 10, 0]),
}


def resolve_arch(arch: Union[str, dict],
                 settings: Dict[str, dict] = ARCH_SETTINGS) -> dict:
    """A copy of ``settings[arch]``, or the custom ``arch`` dict checked."""
    if isinstance(arch, str):
        if arch not in settings:
            raise ConfigError(
                f'unknown VanillaNet arch {arch!r}; choose one of '
                f'{sorted(settings)} or pass a dict with '
                f"'dims' and 'strides'")
        return dict(settings[arch])
    if not isinstance(arch, dict) or not {'dims', 'strides'} <= set(arch):
        raise ConfigError("a custom VanillaNet arch must be a dict with "
                          f"'dims' and 'strides', got {arch!r}")
    arch = dict(arch)
    if len(arch['dims']) != len(arch['strides']) + 1:
        raise ConfigError(
            'arch dims must have one entry more than strides (dims[0] is '
            f"the stem width), got {len(arch['dims'])} dims and "
            f"{len(arch['strides'])} strides")
    if arch.get('ada_pool') and len(arch['ada_pool']) != len(
            arch['strides']):
        raise ConfigError('arch ada_pool needs one entry per stage')
    return arch


def multiscale_out_indices(arch: dict) -> Tuple[int, ...]:
    """The last stage of each resolution: for VN13 (0, 1, 8, 10), the
    official detection config's /4, /8, /16, /32 outputs."""
    strides = arch['strides']
    return tuple(i for i in range(len(strides))
                 if i + 1 == len(strides) or strides[i + 1] != 1)


def stem_conv(arch: dict) -> dict:
    """The stem's patchify conv: 4x4 stride 4, or stride 3 padding 1 for the
    ada-pool variant (as upstream)."""
    stride, padding = (3, 1) if arch.get('ada_pool') else (4, 0)
    return dict(kernel_size=4, stride=stride, padding=padding)


def stage_reductions(arch: dict) -> List[int]:
    """Each stage's output stride (nominal where a stage pools adaptively)."""
    stem_stride, strides = stem_conv(arch)['stride'], arch['strides']
    return [stem_stride * math.prod(strides[:i + 1])
            for i in range(len(strides))]


def check_act_num(act_num) -> None:
    if not isinstance(act_num, int) or act_num < 0:
        raise ConfigError(
            f'act_num must be an integer >= 0 (the depthwise kernel is '
            f'(2*act_num+1)^2), got {act_num!r}; use 3 (ImageNet) or 4 '
            f'(official detection config)')
