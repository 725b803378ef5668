"""The main job on the embedded demo data, end to end (``make demo``).

Generates data/demo, trains the Mask R-CNN and UperNet demo configs through
tools/train.py (deep training, λ 0 -> 1) side by side, each on its share of
the cores (``--jobs``), tests both through tools/test.py, re-tests with
--deploy (fused backbone), times the backbone in both forms, saves prediction
PNGs, prints one table with the targets and writes
work_dirs/demo/summary.json.

The terminal shows one live line per task (phase; while training: epoch or
iteration, loss, ETA); the tools' full output is in
work_dirs/demo/{det,seg}/{train,test,test_fused}.log, and this process's own
library messages (warnings, MMEngine INFO lines) in work_dirs/demo/demo.log.
"""
import argparse
import contextlib
import json
import logging
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

TOOLS = osp.dirname(osp.abspath(__file__))
NO_VAL = 10**9  # a train_cfg.val_begin no demo schedule reaches
# metric: (key in test.py's metrics, target on the demo val set)
TASKS = {
    'det': dict(config='configs/mask_rcnn/vanillanet_demo.py',
                metrics={'bbox_mAP': ('coco/bbox_mAP', 0.72),
                         'segm_mAP': ('coco/segm_mAP', 0.72)},
                # the pairs merged once λ reaches 1 (epoch 3 of 18) and the
                # shallow network trained on: the ablation's `fuse` row
                # (docs/deep_training_ablation.md), as accurate as keeping
                # the pairs and a cheaper tail
                train_options=('custom_hooks.0.fuse_at_end=True', )),
    'seg': dict(config='configs/upernet/vanillanet_demo.py',
                metrics={'mIoU': ('mIoU', 80.0)},
                # draw every 12th image (mmdet draws all), enough for PNGs
                test_options=('default_hooks.visualization.interval=12', )),
}


MINUTES_TARGET = 12.0  # all of make demo on 2 CPU cores


def sh(*args, log: str, env=None) -> None:
    """Run a Python script, its output (after the command line) to ``log``."""
    cmd = [sys.executable, *args]
    with open(log, 'w') as f:
        f.write('+ ' + ' '.join(cmd) + '\n')
        f.flush()
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                          env=env).returncode:
            msg = f'{osp.basename(cmd[1])} failed; its output: {log}'
            print(msg, file=sys.stderr, flush=True)  # before the other task
            raise SystemExit(msg)


def last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def run_task(task: str, args, env: dict, board, max_epochs) -> dict:
    """Train one demo config through tools/train.py, then test it through
    tools/test.py, plain and with --deploy; each tool's output in a log
    (``max_epochs``: the config's, for the status line)."""
    from vanillanet_mm.datasets import cfg_options
    from vanillanet_mm.models.checkpoint import read_checkpoint
    cfg_path, wd = TASKS[task]['config'], osp.join(args.work_dir, task)
    os.makedirs(wd, exist_ok=True)
    data = cfg_options(args.data_root, coco=task == 'det')

    def tool(name, *args, log=None):
        log = osp.join(wd, f'{log or name}.log')
        sh(osp.join(TOOLS, f'{name}.py'), cfg_path, *args, env=env, log=log)

    t0 = time.time()
    board.watch(task, 'train', osp.join(wd, 'train.log'), max_epochs)
    # no validation inside training: evaluated once below by test.py
    tool('train', '--work-dir', wd, '--cfg-options', *data,
         f'train_cfg.val_begin={NO_VAL}', f'randomness.seed={args.seed}',
         *TASKS[task].get('train_options', ()))
    out = {f'{task}_train_minutes': (time.time() - t0) / 60}
    ckpt = last_checkpoint(wd)
    lam = read_checkpoint(ckpt)['state_dict']['backbone._act_learn']
    out[f'{task}_act_learn_final'] = float(lam)
    metrics = {}
    for form, phase, extra in (
            ('test', 'test', ('--show-dir', osp.join(wd, 'vis'))),
            ('test_fused', 'test --deploy (fused)', ('--deploy', ))):
        board.set(task, phase)
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
    board.set(task, 'done  ' + '  '.join(
        f'{name} {out[name]:g} (fused {out[name + "_fused"]:g})'
        for name in TASKS[task]['metrics']))
    return out


def backbone_latency(config: str, ckpt: str, size: int, iters: int):
    """Median ms of the trained backbone, training form vs fused."""
    from mmengine.config import Config

    from vanillanet_mm.analysis import compare_forms
    from vanillanet_mm.apis import build_model, follow_merged_checkpoint
    from vanillanet_mm.models.checkpoint import read_checkpoint
    cfg = Config.fromfile(config)
    follow_merged_checkpoint(cfg, ckpt)
    model = build_model(cfg)
    model.load_state_dict(read_checkpoint(ckpt)['state_dict'])
    res = compare_forms(model.backbone.eval(), (size, size), iters,
                        warmup=3)
    return (res['train_ms']['median_ms'], res['fused_ms']['median_ms'],
            res['rel_err'])


def measure_latency(args) -> dict:
    """A trained backbone's latency, as trained vs fused, timed alone after
    the trainings: UperNet's (its deep pairs kept to the end), else the
    Mask R-CNN's (merged at λ = 1)."""
    task = 'seg' if 'seg' in args.tasks else 'det'
    ckpt = last_checkpoint(osp.join(args.work_dir, task))
    t_train, t_fused, err = backbone_latency(
        TASKS[task]['config'], ckpt, 192, args.latency_iters)
    return dict(backbone_task=task, backbone_ms_train_form=t_train,
                backbone_ms_fused=t_fused, backbone_fusion_rel_err=err)


@contextlib.contextmanager
def library_messages_to(log_path: str):
    """Send this process's library warnings and MMEngine log lines to
    ``log_path`` instead of the terminal (restored on exit)."""
    os.makedirs(osp.dirname(log_path) or '.', exist_ok=True)
    handler = logging.FileHandler(log_path, mode='w')
    handler.setFormatter(logging.Formatter(
        '%(asctime)s %(name)s %(levelname)s %(message)s'))
    warnings_log = logging.getLogger('py.warnings')
    propagate = warnings_log.propagate
    warnings_log.addHandler(handler)
    warnings_log.propagate = False
    logging.captureWarnings(True)
    from mmengine.logging import MMLogger  # its import warns: captured
    logger = MMLogger.get_current_instance()
    consoles = [h for h in logger.handlers
                if type(h) is logging.StreamHandler]
    for h in consoles:
        logger.removeHandler(h)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        for h in consoles:
            logger.addHandler(h)
        logging.captureWarnings(False)
        warnings_log.removeHandler(handler)
        warnings_log.propagate = propagate
        handler.close()


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
    # each task's chain in its own worker, cores // jobs threads each: two
    # 1-thread runs side by side beat two 2-thread runs in turn on 2 cores,
    # and one task's tests overlap the other's training
    jobs = min(args.jobs, len(args.tasks))
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    summary = dict(seed=args.seed)
    print(f'logs: {args.work_dir}/{{{",".join(args.tasks)}}}/'
          '{train,test,test_fused}.log', flush=True)
    with library_messages_to(osp.join(args.work_dir, 'demo.log')):
        from mmengine.config import Config

        from vanillanet_mm.datasets import generate
        from vanillanet_mm.utils.fileio import atomic_write_json
        from vanillanet_mm.utils.progress import ProgressBoard
        generate(args.data_root)
        # read here, not in the workers: mmengine's config lookup of
        # installed packages (pkg_resources) is not thread-safe
        max_epochs = {t: Config.fromfile(TASKS[t]['config']).train_cfg.get(
            'max_epochs') for t in args.tasks}
        with ProgressBoard(args.tasks) as board:
            with ThreadPoolExecutor(jobs) as pool:
                for out in pool.map(lambda t: run_task(
                        t, args, env, board, max_epochs[t]), args.tasks):
                    summary.update(out)
        summary.update(measure_latency(args))
    rows = [(name, target, summary[name], summary[f'{name}_fused'])
            for task in args.tasks
            for name, (_, target) in TASKS[task]['metrics'].items()]
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
        print(f"{summary['backbone_task']} backbone 1x3x192x192 on CPU: "
              "as trained "
              f"{summary['backbone_ms_train_form']:.1f} ms, fused "
              f"{summary['backbone_ms_fused']:.1f} ms")
    total = summary['total_minutes']
    print(f'total {total:.1f} min (target <= {MINUTES_TARGET:g} on 2 CPU '
          f'cores: {met(total <= MINUTES_TARGET)}); summary: {out}')


if __name__ == '__main__':
    main()
