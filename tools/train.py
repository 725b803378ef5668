"""Train a VanillaNet detector (mmdet) or segmentor (mmseg).

Same flags as mmdet's tools/train.py; mmdet or mmseg is chosen from the
config's default_scope.
"""
import argparse
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.runner import Runner

import vanillanet_mm  # noqa: F401  (registers VanillaNet, hooks)
from vanillanet_mm.apis import add_common_args, load_config
from vanillanet_mm.engine import use_atomic_checkpoints
from vanillanet_mm.utils.cli import user_errors
from vanillanet_mm.utils.compat import scope_runner_loads
from vanillanet_mm.utils.data_check import check_dataset
from vanillanet_mm.utils.errors import ConfigError, InputFileError


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('config', help='train config file path')
    add_common_args(p)
    p.add_argument('--amp', action='store_true',
                   help='automatic mixed precision training')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale lr by total batch size / base_batch_size')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from this checkpoint, or (no value) from the '
                   'latest checkpoint in the work dir')
    return p.parse_args()


def build_cfg(args) -> Config:
    cfg = load_config(args)
    if args.amp:
        if not torch.cuda.is_available():
            raise ConfigError(
                "--amp needs a GPU: mmengine's AmpOptimWrapper refuses CPU "
                'training (fp16/bf16 autocast is CUDA/NPU/MLU only there); '
                'train without --amp on the CPU')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in \
                cfg.auto_scale_lr:
            raise ConfigError('--auto-scale-lr needs auto_scale_lr.'
                             'base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise InputFileError(f'--resume checkpoint not found: '
                                    f'{args.resume}')
        cfg.resume, cfg.load_from = True, args.resume
    check_dataset(cfg, ('train_dataloader', 'val_dataloader'))
    use_atomic_checkpoints(cfg)  # a kill never leaves a half-written .pth
    return cfg


def main():
    args = parse_args()
    with user_errors('train'):
        cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg)
    # --resume and load_from with the checkpoint objects allow-listed (also
    # done by AtomicCheckpointHook, e.g. under mmdet's own tools/train.py)
    scope_runner_loads(runner)
    runner.train()


if __name__ == '__main__':
    main()
