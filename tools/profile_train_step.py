"""Time (and profile) training steps of a config on this machine.

Builds the config's model, train dataloader and optim wrapper through the
MMEngine Runner, optionally loads a checkpoint (steady-state cost: a trained
RPN passes more positives to the RoI heads than a fresh one), then times
``model.train_step`` on successive batches and prints the median seconds per
step; ``--top N`` adds torch.profiler's N most expensive operators.

    python tools/profile_train_step.py configs/mask_rcnn/vanillanet_demo.py \\
        --checkpoint work_dirs/demo/det/epoch_13.pth --top 15
"""
import argparse
import itertools

import torch
from mmengine.runner import Runner, load_checkpoint
from torch.profiler import ProfilerActivity, profile

import vanillanet_mm  # noqa: F401
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.latency import measure_ms, summarize
from vanillanet_mm.utils.scope import add_common_args, load_config


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('config')
    p.add_argument('--checkpoint', help='weights to start from')
    p.add_argument('--steps', type=int, default=4, help='timed steps')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--top', type=int, default=0,
                   help='print the N most expensive operators of 2 steps')
    add_common_args(p)
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.top < 0:
        p.error('--steps must be >= 1, --warmup and --top >= 0')
    return args


def main():
    args = parse_args()
    cfg = load_config(args)
    cfg.train_dataloader.num_workers = 0  # batches loaded in this process
    cfg.train_dataloader.persistent_workers = False
    runner = Runner.from_cfg(cfg)
    model = runner.model.train()
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    batches = itertools.cycle(runner.build_dataloader(cfg.train_dataloader))

    def step():
        with torch.enable_grad():  # measure_ms runs under no_grad
            model.train_step(next(batches), optim_wrapper)

    stats = summarize(measure_ms(step, 'cpu', args.warmup, args.steps))
    print(f"train step: median {stats['median_ms'] / 1000:.3f} s "
          f'over {args.steps} steps')
    if args.top:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(2):
                step()
        print(prof.key_averages().table(sort_by='cpu_time_total',
                                        row_limit=args.top))


if __name__ == '__main__':
    run_cli(main, 'profile_train_step')
