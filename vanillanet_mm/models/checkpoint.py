"""Reading VanillaNet weights in every layout we meet.

Layouts: official ImageNet checkpoints (``{'model': sd}`` or
``{'model_ema': sd}``, training or deploy form, with a classifier), official
mmdet 2.x detection checkpoints (``backbone.`` keys, no λ) and this project's
own (mmengine ``{'state_dict': sd}``, or a bare state dict). Unlike the
official code (``strict=False`` and a print), every mismatch is an error.
"""
import os
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader
from torch import nn

from ..utils.compat import mmengine_checkpoint_objects
from ..utils.errors import FusionError, UserError

HEAD_PREFIXES = ('cls1.', 'cls2.', 'cls.')
ENTRY_KEYS = ('state_dict', 'model', 'model_ema')
ACT_LEARN_KEY = '_act_learn'
#: A key of each layout's stem (checked in this order: the shallow form's
#: stem also has stem.0.weight): a state dict holding one holds a backbone.
STEM_KEYS = {'training': 'stem1.0.weight', 'shallow': 'stem.1.running_var',
             'deploy': 'stem.0.weight'}
#: The stem's series-activation kernel in each layout (the stages' end in
#: ``act.weight`` in all three).
STEM_ACT_KEYS = {'training': 'stem2.2.weight', 'shallow': 'stem.2.weight',
                 'deploy': 'stem.1.weight'}
#: the backbone arguments that build each layout
LAYOUT_ARGS = {'training': dict(deploy=False, deep_training=True),
               'shallow': dict(deploy=False, deep_training=False),
               'deploy': dict(deploy=True)}


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot become this model's weights."""


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint file on CPU with one clear error per failure."""
    if '://' not in str(path) and not os.path.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {path}')
    try:
        with mmengine_checkpoint_objects():  # runner and official ones
            ckpt = CheckpointLoader.load_checkpoint(str(path),
                                                    map_location='cpu')
    except Exception as e:  # truncated zip, random bytes, pickle errors ...
        raise CheckpointError(
            f'{path} is not a readable PyTorch checkpoint (truncated or not a '
            f'checkpoint?): {type(e).__name__}: {str(e).splitlines()[0]}'
        ) from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{path} holds a {type(ckpt).__name__}, not a '
                              'checkpoint dict')
    return ckpt


def extract_state_dict(ckpt: dict, path: str = 'checkpoint',
                       entry: Optional[str] = None) -> dict:
    """The state dict inside ``ckpt``.

    ``entry`` names it (e.g. ``'model_ema'``, as the official detection
    recipe reads its ImageNet checkpoint); by default the first of
    'state_dict', 'model', 'model_ema' present.
    """
    if entry is not None:
        if not isinstance(ckpt.get(entry), dict):
            raise CheckpointError(
                f'{path} has no {entry!r} entry (its entries: '
                f'{sorted(k for k, v in ckpt.items() if isinstance(v, dict))})'
                '; pick one of them or leave the entry unset')
        return ckpt[entry]
    for key in ENTRY_KEYS:
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise CheckpointError(
        f'{path}: unknown checkpoint layout: no {"/".join(ENTRY_KEYS)} entry '
        f'and not a bare state dict (top-level keys: {sorted(ckpt)[:10]})')


def strip_wrapper_prefix(name: str) -> str:
    """``module.x`` (a key saved from a DDP/EMA wrapper) -> ``x``."""
    return name[7:] if name.startswith('module.') else name


def to_backbone_state_dict(state_dict: Dict[str, torch.Tensor],
                           keep_head: bool = False,
                           prefix: Optional[str] = None) -> dict:
    """Strip wrappers (``module.``, ``backbone.`` or ``prefix``) and the head.

    The ImageNet classifier (``cls1/cls2/cls``) is dropped on purpose unless
    ``keep_head``: a detection or segmentation backbone has none.
    """
    sd = {strip_wrapper_prefix(k): v for k, v in state_dict.items()}
    prefix = prefix if prefix is not None else (
        'backbone.' if any(k.startswith('backbone.') for k in sd) else '')
    if prefix:
        prefix = prefix.rstrip('.') + '.'
        sd = {k[len(prefix):]: v for k, v in sd.items()
              if k.startswith(prefix)}
    if not keep_head:
        sd = {k: v for k, v in sd.items() if not k.startswith(HEAD_PREFIXES)}
    return sd


def layout_at(state_dict: dict, prefix: str = '') -> Optional[str]:
    """The layout of the VanillaNet at ``prefix`` of ``state_dict``, or None
    when it holds none there."""
    return next((layout for layout, key in STEM_KEYS.items()
                 if prefix + key in state_dict), None)


def layout_of(state_dict: dict, path: str = 'checkpoint') -> str:
    """'training' (stem1/stem2, conv1/conv2), 'shallow' (stem.0-2, conv.0-1)
    or 'deploy' (stem, conv)."""
    layout = layout_at(state_dict)
    if layout is not None:
        return layout
    raise CheckpointError(
        f'{path}: unknown layout: no VanillaNet stem key (stem1.0.weight or '
        f'stem.0.weight); first keys: {sorted(state_dict)[:8]}')


def backbone_layout(path: str) -> Optional[str]:
    """The layout of the VanillaNet backbone in a detector's or segmentor's
    checkpoint file (None when it holds none)."""
    sd = extract_state_dict(read_checkpoint(path), path)
    return layout_at(to_backbone_state_dict(sd, keep_head=True,
                                            prefix='backbone'))


def act_num_of(state_dict: dict, path: str = 'checkpoint') -> int:
    """The act_num n of a backbone state dict: its activation kernels are
    (2n+1)²."""
    k = state_dict[STEM_ACT_KEYS[layout_of(state_dict, path)]].shape[-1]
    return (k - 1) // 2


def pad_act_num(state_dict: dict, act_num: int, act_num_from: int,
                path: str = 'checkpoint') -> dict:
    """``state_dict`` (a backbone's) with every series-activation kernel
    zero-padded from act_num ``act_num_from`` to ``act_num``.

    Exact: the depthwise conv pads its input by act_num, so the extra taps
    only ever meet zero weights and the output is the same function (e.g.
    the official ImageNet VN5-12, act_num 3, for the act_num-4 detection
    recipe). Cropping (``act_num < act_num_from``) would change it: refused.
    """
    found = act_num_of(state_dict, path)
    if found != act_num_from:
        raise CheckpointError(
            f'{path} has act_num {found} ({2 * found + 1}x{2 * found + 1} '
            f'activation kernels), not the act_num_from={act_num_from} given;'
            f' pass act_num_from={found}')
    if act_num < act_num_from:
        raise CheckpointError(
            f'cannot convert {path} from act_num {act_num_from} to {act_num}: '
            'cropping the activation kernels changes the network; train with '
            f'act_num >= {act_num_from} (zero-padding up is exact)')
    pad = (act_num - act_num_from, ) * 4
    keys = {STEM_ACT_KEYS[layout_of(state_dict, path)]} | {
        k for k in state_dict if k.endswith('act.weight')}
    return {k: F.pad(v, pad) if k in keys else v
            for k, v in state_dict.items()}


def check_compatible(model: nn.Module, state_dict: dict,
                     path: str = 'checkpoint') -> None:
    """Raise one error that lists missing, unexpected and mis-shaped keys."""
    check_layout(model.layout, layout_of(state_dict, path), path,
                 'build it with ')
    _check_keys(model.state_dict(), state_dict,
                f'{path} does not match this VanillaNet (another arch, '
                'act_num or width?):')


def checkpoint_act_learn(state_dict: dict, prefix: str = 'backbone.'
                         ) -> float:
    """The λ a state dict holds for its VanillaNet at ``prefix``; 1 when it
    holds none (an official checkpoint: the λ rule of VanillaNet)."""
    act_learn = state_dict.get(prefix + ACT_LEARN_KEY)
    return 1.0 if act_learn is None else float(act_learn)


def check_fusable_checkpoint(state_dict: dict, path: str, fix: str,
                              prefix: str = 'backbone.') -> None:
    """Raise unless the VanillaNet at ``prefix`` of ``state_dict`` can be
    fused exactly: λ = 1 (fused and shallow checkpoints always are);
    ``fix`` ends the message."""
    act_learn = checkpoint_act_learn(state_dict, prefix)
    if act_learn != 1:
        raise FusionError(
            f'fusing needs act_learn (λ) = 1, but {path} has λ = '
            f'{act_learn:g} (the fused network computes the λ = 1 function): '
            f'use a checkpoint from after DeepTrainingHook reached λ = 1, '
            f'or {fix}')


def check_model_checkpoint(model: nn.Module, path: str) -> dict:
    """The state dict of ``path`` if it is exactly ``model``'s weights.

    For tools/test.py: MMEngine's runner loads non-strictly (a warning, then
    it tests a partly random model). A VanillaNet backbone in the other
    layout gets the ``--cfg-options`` that fits the checkpoint. λ alone may
    be missing: official detectors have none (the λ rule sets it to 1).
    """
    sd = {strip_wrapper_prefix(k): v for k, v in
          extract_state_dict(read_checkpoint(path), path).items()}
    backbone = getattr(model, 'backbone', None)
    if hasattr(backbone, 'deploy'):
        check_layout(backbone.layout,
                     layout_of(to_backbone_state_dict(
                         sd, keep_head=True, prefix='backbone'), path),
                     path, 'test with --cfg-options model.backbone.')
    own = {k: v for k, v in model.state_dict().items()
           if k in sd or not k.endswith('.' + ACT_LEARN_KEY)}
    _check_keys(own, sd,
                f'{path} does not match the model of this config (another '
                'backbone variant, width or head?):')
    return sd


def check_layout(own: str, src: str, path: str, fix: str) -> None:
    """The layout rule: a checkpoint never changes a model's structure.

    Weights in another layout (``src``) than the model was built in
    (``own``) are refused on every load path; ``fix`` starts the remedy
    (e.g. ``'build it with '``), completed by the argument that
    builds ``src``. The one structural change of a run is the merge of
    :class:`DeepTrainingHook` (``fuse_at_end``), which replays it itself
    when ``--resume`` continues a merged run.
    """
    if src != own:
        raise CheckpointError(
            f'{path} holds the {src} layout but the model was built in the '
            f'{own} layout; {fix}{_layout_fix(own, src)}, or convert the '
            'checkpoint (tools/model_converters/convert_checkpoint.py)')


def _layout_fix(own: str, src: str) -> str:
    """The backbone arguments, as ``k=v``, that turn ``own`` into ``src``."""
    if src == 'deploy':
        return 'deploy=True'
    default = dict(deploy=False, deep_training=True)
    have, want = ({**default, **LAYOUT_ARGS[x]} for x in (own, src))
    return ', '.join(f'{k}={v}' for k, v in want.items() if have[k] != v)


def _check_keys(own: dict, state_dict: dict, title: str) -> None:
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
                    f'{tuple(own[k].shape)}'
                    for k in set(own) & set(state_dict)
                    if own[k].shape != state_dict[k].shape)
    problems = [(name, keys) for name, keys in (
        ('missing keys', missing), ('unexpected keys', unexpected),
        ('shape mismatches', shapes)) if keys]
    if problems:
        lines = [title]
        for name, keys in problems:
            shown = ', '.join(keys[:12]) + (' ...' if len(keys) > 12 else '')
            lines.append(f'  {len(keys)} {name}: {shown}')
        raise CheckpointError('\n'.join(lines))


def load_pretrained(model: nn.Module, path: str,
                    prefix: Optional[str] = None,
                    entry: Optional[str] = None,
                    act_num_from: Optional[int] = None) -> None:
    """Load backbone weights from any supported layout, strictly.

    Checkpoints without λ (all official ones: ImageNet models finish deep
    training at λ = 1, the mmdet ones never used it) set λ = 1.
    ``act_num_from``: the checkpoint's act_num, when it is smaller than the
    model's; its kernels are zero-padded (exact, :func:`pad_act_num`).
    """
    ckpt = read_checkpoint(path)
    sd = to_backbone_state_dict(extract_state_dict(ckpt, path, entry),
                                prefix=prefix)
    sd.setdefault(ACT_LEARN_KEY, torch.tensor(1.0))
    if act_num_from is not None:
        sd = pad_act_num(sd, model.act_num, act_num_from, path)
    check_compatible(model, sd, path)
    model.load_state_dict(sd, strict=True)
    print_log(f'VanillaNet: loaded {len(sd)} tensors from {path} '
              f'({layout_of(sd)} layout, act_learn={model.act_learn:g})',
              logger='current')
