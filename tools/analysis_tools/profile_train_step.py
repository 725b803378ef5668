"""Time training steps of a config and measure their peak memory.

Builds the config's model, train dataloader and optim wrapper through the
MMEngine Runner, optionally loads a checkpoint (steady-state cost: a trained
RPN passes more positives to the RoI heads than a fresh one), then times
``model.train_step`` on successive batches and prints the median seconds per
step and the peak memory: CUDA's max allocated on a GPU, the process's peak
RSS on a CPU (with the RSS before the first step, so the step's own share
shows). ``--forms`` measures the backbone in several training forms, each in
its own process (a peak RSS never goes down), side by side in one table:

- ``deep``: the deep-training pairs (the training form, λ = 1);
- ``cp``: the same with gradient checkpointing (``with_cp=True``);
- ``shallow``: after DeepTrainingHook(fuse_at_end) merged the pairs.

``--top N`` adds torch.profiler's N most expensive operators. Example::

    python tools/analysis_tools/profile_train_step.py \\
        configs/mask_rcnn/vanillanet_demo.py \\
        --checkpoint work_dirs/demo/det/epoch_18.pth --forms deep cp shallow
"""
import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile

import torch
from mmengine.runner import Runner, load_checkpoint
from torch.profiler import ProfilerActivity, profile

import vanillanet_mm  # noqa: F401
from vanillanet_mm.apis import add_common_args, load_config
from vanillanet_mm.engine.utils import unwrap
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.compat import mmengine_checkpoint_objects
from vanillanet_mm.utils.latency import measure_ms, summarize

FORMS = ('deep', 'cp', 'shallow')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('config')
    p.add_argument('--checkpoint', help='weights to start from')
    p.add_argument('--forms', nargs='+', choices=FORMS, default=['deep'],
                   help='backbone training forms to measure (default deep)')
    p.add_argument('--steps', type=int, default=4, help='timed steps')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--top', type=int, default=0,
                   help='print the N most expensive operators of 2 steps')
    p.add_argument('--json', help='write the figures as JSON here')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    add_common_args(p)
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.top < 0:
        p.error('--steps must be >= 1, --warmup and --top >= 0')
    return args


def peak_memory_mib(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_form(model, form: str) -> None:
    backbone = unwrap(model).backbone
    backbone.set_act_learn(1.0)
    if form == 'cp':
        backbone.with_cp = True
    elif form == 'shallow':
        backbone.switch_to_shallow()


def measure(args, form: str) -> dict:
    """One form in this process: median step seconds and peak memory."""
    cfg = load_config(args)
    cfg.train_dataloader.num_workers = 0  # batches loaded in this process
    cfg.train_dataloader.persistent_workers = False
    runner = Runner.from_cfg(cfg)
    model = runner.model.train()
    if args.checkpoint:
        with mmengine_checkpoint_objects():
            load_checkpoint(model, args.checkpoint, map_location='cpu')
    set_form(model, form)
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    batches = itertools.cycle(runner.build_dataloader(cfg.train_dataloader))
    device = next(model.parameters()).device

    def step():
        with torch.enable_grad():  # measure_ms runs under no_grad
            model.train_step(next(batches), optim_wrapper)

    next(batches)  # the loader's own memory before the baseline
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    before = peak_memory_mib(device)
    stats = summarize(measure_ms(step, device, args.warmup, args.steps))
    result = dict(form=form, step_s=stats['median_ms'] / 1000,
                  steps=args.steps, device=device.type,
                  peak_mib=peak_memory_mib(device), before_mib=before,
                  params_m=sum(p.numel() for p in
                               unwrap(model).backbone.parameters()) / 1e6)
    if args.top:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(2):
                step()
        print(prof.key_averages().table(sort_by='cpu_time_total',
                                        row_limit=args.top))
    return result


def in_child(form: str) -> dict:
    """``form`` measured by this script in a fresh process."""
    argv = sys.argv[1:]
    i = argv.index('--forms')
    j = i + 1
    while j < len(argv) and argv[j] in FORMS:
        j += 1
    argv = argv[:i] + ['--forms', form] + argv[j:]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, 'r.json')
        subprocess.run([sys.executable, os.path.abspath(__file__), *argv,
                        '--json', out, '--child'], check=True)
        with open(out) as f:
            return json.load(f)[0]


def main():
    args = parse_args()
    forms = list(dict.fromkeys(args.forms))
    results = ([measure(args, forms[0])] if len(forms) == 1 else
               [in_child(f) for f in forms])
    if args.json:
        from vanillanet_mm.utils.fileio import atomic_write_json
        atomic_write_json(results, args.json, indent=1)
    if args.child:
        return
    base = results[0]
    print(f"\ntrain step of {args.config} on {base['device']}, median of "
          f"{args.steps} steps; memory: "
          f"{'max allocated' if base['device'] == 'cuda' else 'peak RSS'}")
    print(f"{'form':<9}{'backbone M':>11}{'step s':>9}{'vs first':>9}"
          f"{'peak MiB':>10}{'step MiB':>10}")
    for r in results:
        print(f"{r['form']:<9}{r['params_m']:>11.2f}{r['step_s']:>9.3f}"
              f"{r['step_s'] / base['step_s']:>9.2f}{r['peak_mib']:>10.0f}"
              f"{r['peak_mib'] - r['before_mib']:>10.0f}")


if __name__ == '__main__':
    run_cli(main, 'profile_train_step')
