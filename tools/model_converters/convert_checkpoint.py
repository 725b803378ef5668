"""Convert VanillaNet checkpoints.

  from-official SRC DST [--arch vanillanet_13 --act-num 4 --entry model_ema]
                       [--act-num-from 3]
      official ImageNet ({'model'|'model_ema': sd}, training or deploy layout)
      or official mmdet 2.x checkpoint -> a file this project's backbone loads
      with init_cfg=dict(type='Pretrained', checkpoint=DST). --act-num-from:
      the checkpoint's act_num when it is smaller than --act-num (the
      ImageNet VN5-12 have 3, the detection recipe 4): the activation kernels
      are zero-padded, which computes exactly the same function.
  to-deploy CONFIG SRC DST
      a trained detector/segmentor checkpoint -> the same model with the
      backbone fused; load it with --cfg-options model.backbone.deploy=True.

DST is written atomically and never overwritten without --force.
"""
import argparse
import datetime

import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import vanillanet_mm
from vanillanet_mm.apis import build_model, follow_merged_checkpoint
from vanillanet_mm.engine.utils import switch_modules
from vanillanet_mm.models import VanillaNet
from vanillanet_mm.models.checkpoint import (
    ACT_LEARN_KEY,
    CheckpointError,
    check_compatible,
    extract_state_dict,
    layout_of,
    pad_act_num,
    read_checkpoint,
    to_backbone_state_dict,
)
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.compat import mmengine_checkpoint_objects
from vanillanet_mm.utils.errors import ConfigError
from vanillanet_mm.utils.fileio import atomic_save


def _meta(kind: str, src: str) -> dict:
    return dict(vanillanet_mm=dict(
        conversion=kind, source=str(src), version=vanillanet_mm.__version__,
        time=datetime.datetime.now().isoformat(timespec='seconds')))


def from_official(args) -> None:
    sd = to_backbone_state_dict(extract_state_dict(read_checkpoint(args.src),
                                                   args.src, args.entry))
    sd.setdefault(ACT_LEARN_KEY, torch.tensor(1.0))
    if args.act_num_from is not None:
        sd = pad_act_num(sd, args.act_num, args.act_num_from, args.src)
    layout = layout_of(sd, args.src)
    model = VanillaNet(args.arch, act_num=args.act_num,
                       deploy=layout == 'deploy')
    check_compatible(model, sd, args.src)
    atomic_save(dict(state_dict=sd, meta=_meta('from-official', args.src)),
                args.dst, args.force)
    padded = ('' if args.act_num_from is None else
              f' (kernels zero-padded from act_num {args.act_num_from})')
    print(f'wrote {args.dst}: {args.arch} act_num={args.act_num}{padded}, '
          f'{layout} layout, {len(sd)} tensors')


def to_deploy(args) -> None:
    cfg = Config.fromfile(args.config)
    follow_merged_checkpoint(cfg, args.src)
    model = build_model(cfg)
    if not any(hasattr(m, 'switch_to_deploy') for m in model.modules()):
        raise ConfigError(
            f'{args.config} builds no VanillaNet: nothing to fuse')
    ckpt = read_checkpoint(args.src)
    try:
        with mmengine_checkpoint_objects():
            load_checkpoint(model, args.src, map_location='cpu', strict=True)
    except RuntimeError as e:
        raise CheckpointError(f'{args.src} does not match {args.config}: '
                         f'{str(e).splitlines()[0]} ...') from e
    fused = switch_modules(model, 'switch_to_deploy', 'deploy')
    meta = dict(ckpt.get('meta', {}))
    meta.update(_meta('to-deploy', args.src))
    atomic_save(dict(state_dict=model.state_dict(), meta=meta), args.dst,
                args.force)
    print(f'wrote {args.dst}: fused {", ".join(fused)}; test it with '
          '--cfg-options model.backbone.deploy=True')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('from-official', help='official -> this project')
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--arch', default='vanillanet_13',
                   choices=sorted(VanillaNet.arch_settings))
    p.add_argument('--act-num', type=int, default=4)
    p.add_argument('--act-num-from', type=int,
                   help="the checkpoint's act_num, when smaller than "
                   '--act-num: its kernels are zero-padded (exact)')
    p.add_argument('--entry', help="the checkpoint's state dict to take, e.g. "
                   "model_ema (what the official detection recipe loads); "
                   "default: the first of state_dict, model, model_ema")
    p.set_defaults(func=from_official)
    p = sub.add_parser('to-deploy', help='trained model -> fused model')
    p.add_argument('config')
    p.add_argument('src')
    p.add_argument('dst')
    p.set_defaults(func=to_deploy)
    for p in sub.choices.values():
        p.add_argument('--force', action='store_true',
                       help='overwrite an existing DST')
    args = parser.parse_args()
    args.func(args)


if __name__ == '__main__':
    run_cli(main, 'convert_checkpoint')
