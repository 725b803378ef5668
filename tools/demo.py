"""The main job on the embedded demo data, end to end (``make demo``).

Generates data/demo, trains the Mask R-CNN and UperNet demo configs through
tools/train.py (deep training, λ 0 -> 1) side by side, each on its share of
the cores (``--jobs``; logs in work_dirs/demo/{det,seg}/train.log), tests
both through tools/test.py, re-tests with --deploy (fused backbone), times
the backbone in both forms, saves prediction PNGs, prints one table with
the targets and writes work_dirs/demo/summary.json.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from mmengine.config import Config

import vanillanet_mm  # noqa: F401
from vanillanet_mm.analysis import compare_forms
from vanillanet_mm.apis import build_model
from vanillanet_mm.datasets import cfg_options, generate
from vanillanet_mm.models.checkpoint import read_checkpoint
from vanillanet_mm.utils.fileio import atomic_write_json

TOOLS = osp.dirname(osp.abspath(__file__))
NO_VAL = 10**9  # a train_cfg.val_begin no demo schedule reaches
# metric: (key in test.py's metrics, target on the demo val set)
TASKS = {
    'det': dict(config='configs/mask_rcnn/vanillanet_demo.py',
                metrics={'bbox_mAP': ('coco/bbox_mAP', 0.72),
                         'segm_mAP': ('coco/segm_mAP', 0.72)}),
    'seg': dict(config='configs/upernet/vanillanet_demo.py',
                metrics={'mIoU': ('mIoU', 80.0)},
                # draw every 12th image (mmdet draws all), enough for PNGs
                test_options=('default_hooks.visualization.interval=12', )),
}


MINUTES_TARGET = 15.0  # all of make demo on 2 CPU cores


def sh(*args, log=None, env=None) -> None:
    """Run a Python script; its output to ``log`` (a path) if given."""
    cmd = [sys.executable, *args]
    print('+', ' '.join(cmd) + (f'  > {log}' if log else ''), flush=True)
    if log is None:
        subprocess.run(cmd, check=True, env=env)
        return
    with open(log, 'w') as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                          env=env).returncode:
            msg = f'{cmd[1]} failed; its output: {log}'
            print(msg, file=sys.stderr, flush=True)  # before the other task
            raise SystemExit(msg)


def last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def run_task(task: str, args, env: dict, quiet: bool) -> dict:
    """Train one demo config through tools/train.py, then test it through
    tools/test.py, plain and with --deploy; outputs to log files if quiet."""
    cfg_path, wd = TASKS[task]['config'], osp.join(args.work_dir, task)
    os.makedirs(wd, exist_ok=True)
    data = cfg_options(args.data_root, coco=task == 'det')

    def tool(name, *args, log=None):
        sh(osp.join(TOOLS, f'{name}.py'), cfg_path, *args, env=env,
           log=osp.join(wd, f'{log or name}.log') if quiet else None)

    t0 = time.time()
    # no validation inside training: evaluated once below by test.py
    tool('train', '--work-dir', wd, '--cfg-options', *data,
         f'train_cfg.val_begin={NO_VAL}', f'randomness.seed={args.seed}')
    out = {f'{task}_train_minutes': (time.time() - t0) / 60}
    ckpt = last_checkpoint(wd)
    lam = read_checkpoint(ckpt)['state_dict']['backbone._act_learn']
    out[f'{task}_act_learn_final'] = float(lam)
    metrics = {}
    for form, extra in (('test', ('--show-dir', osp.join(wd, 'vis'))),
                        ('test_fused', ('--deploy', ))):
        tool('test', ckpt, '--work-dir', osp.join(wd, form), *extra,
             '--cfg-options', *data, *TASKS[task].get('test_options', ()),
             log=form)
        with open(osp.join(wd, form, 'test_metrics.json')) as f:
            metrics[form] = json.load(f)
    for name, (key, _) in TASKS[task]['metrics'].items():
        out[name] = metrics['test'][key]
        out[f'{name}_fused'] = metrics['test_fused'][key]
    out[f'{task}_predictions'] = copy_pngs(
        osp.join(wd, 'vis'), osp.join(args.work_dir, 'predictions', task))
    return out


def backbone_latency(config: str, ckpt: str, size: int, iters: int):
    """Median ms of the trained backbone, training form vs fused."""
    model = build_model(Config.fromfile(config))
    model.load_state_dict(read_checkpoint(ckpt)['state_dict'])
    res = compare_forms(model.backbone.eval(), (size, size), iters,
                        warmup=3)
    return (res['train_ms']['median_ms'], res['fused_ms']['median_ms'],
            res['rel_err'])


def copy_pngs(src: str, dst: str, n: int = 4) -> list:
    os.makedirs(dst, exist_ok=True)
    pngs = sorted(osp.join(r, f) for r, _, fs in os.walk(src) for f in fs
                  if f.endswith('.png'))[:n]
    out = []
    for p in pngs:
        out.append(osp.join(dst, osp.basename(osp.dirname(p)) + '_' +
                            osp.basename(p)))
        shutil.copy(p, out[-1])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default='data/demo',
                   help='where the demo data is written, and read by both '
                   'tasks (default data/demo)')
    p.add_argument('--tasks', nargs='+', default=list(TASKS),
                   choices=list(TASKS))
    p.add_argument('--jobs', type=int, default=2,
                   help='tasks side by side (default 2: both; logs in '
                   'WORK_DIR/TASK/{train,test,test_fused}.log)')
    p.add_argument('--seed', type=int, default=0,
                   help="training seed (the configs' randomness.seed)")
    p.add_argument('--latency-iters', type=int, default=10)
    args = p.parse_args()
    if args.jobs < 1:
        p.error('--jobs must be >= 1')
    start = time.time()
    generate(args.data_root)
    # each task's chain in its own worker, cores // jobs threads each: two
    # 1-thread runs side by side beat two 2-thread runs in turn on 2 cores,
    # and one task's tests overlap the other's training
    jobs = min(args.jobs, len(args.tasks))
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    summary = dict(seed=args.seed)
    with ThreadPoolExecutor(jobs) as pool:
        for out in pool.map(lambda t: run_task(t, args, env, jobs > 1),
                            args.tasks):
            summary.update(out)
    rows = [(name, target, summary[name], summary[f'{name}_fused'])
            for task in args.tasks
            for name, (_, target) in TASKS[task]['metrics'].items()]
    if 'det' in args.tasks:  # timed alone, after the trainings
        ckpt = last_checkpoint(osp.join(args.work_dir, 'det'))
        t_train, t_fused, err = backbone_latency(
            TASKS['det']['config'], ckpt, 192, args.latency_iters)
        summary.update(backbone_ms_train_form=t_train,
                       backbone_ms_fused=t_fused,
                       backbone_fusion_rel_err=err)
    summary['act_learn_final'] = min(v for k, v in summary.items()
                                     if k.endswith('act_learn_final'))
    summary['total_minutes'] = (time.time() - start) / 60
    summary['targets_met'] = all(min(a, b) >= t for _, t, a, b in rows) \
        and summary['total_minutes'] <= MINUTES_TARGET
    out = osp.join(args.work_dir, 'summary.json')
    atomic_write_json(summary, out, indent=1)

    def met(ok):
        return 'met' if ok else 'MISSED'

    print('\n=== VanillaNet demo (deep training λ 0 -> 1, then fused) ===')
    print(f"{'metric':<12}{'target':>8}{'trained':>10}{'fused':>10}")
    for name, target, a, b in rows:
        print(f'{name:<12}{target:>8g}{a:>10.3f}{b:>10.3f}  '
              f'{met(min(a, b) >= target)}')
    print(f"act_learn at the end of training: {summary['act_learn_final']:g}")
    if 'backbone_ms_train_form' in summary:
        print(f"backbone 1x3x192x192 on CPU: training form "
              f"{summary['backbone_ms_train_form']:.1f} ms, fused "
              f"{summary['backbone_ms_fused']:.1f} ms")
    total = summary['total_minutes']
    print(f'total {total:.1f} min (target <= {MINUTES_TARGET:g} on 2 CPU '
          f'cores: {met(total <= MINUTES_TARGET)}); summary: {out}')


if __name__ == '__main__':
    main()
