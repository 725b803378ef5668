"""Does deep training help a detector? The ablation on the embedded demo.

Rows (each a recipe's config with only the λ treatment changed; ``--recipe
base``: configs/mask_rcnn/vanillanet_demo_13e.py and
configs/upernet/vanillanet_demo_1500it.py, the bases of the demo configs;
``--recipe demo``: the demo configs themselves, a wider backbone):

- ``anneal``:  λ annealed 0 -> 1 (the recipe as it is);
- ``lambda1``: λ = 1 throughout (the official detection code's training:
  the two convs of each pair trained as a linear pair);
- ``shallow``: the shallow network trained directly (one conv-BN per stage,
  ``deep_training=False``), the paper's "without deep training" baseline;
- ``fuse``:    λ annealed 0 -> 1, then the pairs merged and the shallow
  network trained on (``DeepTrainingHook(fuse_at_end=True)``).

Each run trains through tools/train.py (one thread a run, ``--jobs`` runs
side by side), validates once at the end, and writes one small JSON result
(metrics, minutes, seed, a digest of its config) to ``--results``
(docs/ablation/RECIPE) as soon as it ends. A run whose result exists with
the same config digest is not run again, so the ablation can stop and
resume; ``--table`` prints the mean ± std table from the result files.
Hours on 2 CPU cores; not part of ``make test``. Example::

    python tools/analysis_tools/deep_training_ablation.py --jobs 2
    python tools/analysis_tools/deep_training_ablation.py --table \
        --doc docs/deep_training_ablation.md
    python tools/analysis_tools/deep_training_ablation.py --recipe demo \
        --seeds 0 1 --jobs 2
"""
import argparse
import copy
import functools
import hashlib
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from mmengine.config import Config

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
ROOT = osp.dirname(TOOLS)
TASKS = {
    'mask_rcnn': dict(metrics=('coco/bbox_mAP', 'coco/segm_mAP'), digits=3,
                      rows=('anneal', 'lambda1', 'shallow', 'fuse')),
    'upernet': dict(metrics=('mIoU', ), digits=2,
                    rows=('anneal', 'lambda1', 'shallow')),
}
# each task's config per recipe: 'base' is frozen so its results stay valid
RECIPES = {
    'base': dict(mask_rcnn='configs/mask_rcnn/vanillanet_demo_13e.py',
                 upernet='configs/upernet/vanillanet_demo_1500it.py'),
    'demo': dict(mask_rcnn='configs/mask_rcnn/vanillanet_demo.py',
                 upernet='configs/upernet/vanillanet_demo.py'),
}
# --cfg-options of each row on top of the recipe's config (custom_hooks.0 is
# its DeepTrainingHook; start=1 pins λ at 1)
ROWS = {
    'anneal': (),
    'lambda1': ('custom_hooks.0.start=1.0', ),
    'shallow': ('model.backbone.deep_training=False',
                'custom_hooks.0.start=1.0'),
    'fuse': ('custom_hooks.0.fuse_at_end=True', ),
}
ROW_TITLES = {
    'anneal': 'deep training, λ 0 → 1 (the recipe as it is)',
    'lambda1': 'deep pair, λ = 1 throughout (official detection training)',
    'shallow': 'shallow network trained directly (no deep training)',
    'fuse': 'λ 0 → 1, then merged at λ = 1 and trained on shallow',
}


def run_name(task: str, row: str, seed: int) -> str:
    return f'{task}-{row}-seed{seed}'


def options(task: str, row: str, seed: int, data_root: str,
            extra=()) -> list:
    from vanillanet_mm.datasets import cfg_options
    return [f'randomness.seed={seed}', *ROWS[row], *extra,
            *cfg_options(data_root, coco=task == 'mask_rcnn')]


@functools.lru_cache(None)
def _config(path: str) -> Config:
    return Config.fromfile(osp.join(ROOT, path))


def digest(recipe: str, task: str, row: str, seed: int, extra=()) -> str:
    """What makes a result stale: the merged config of the run (data paths
    left out, so the result does not depend on where the data lies), as
    sorted JSON (not ``pretty_text``: its layout changes with yapf)."""
    cfg = copy.deepcopy(_config(RECIPES[recipe][task]))
    cfg.merge_from_dict(dict(o.split('=', 1) for o in options(
        task, row, seed, 'DATA', extra)))
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def final_metrics(work_dir: str, keys) -> dict:
    """The validation metrics of the run, from mmengine's scalars.json."""
    found = {}
    for root, _, files in os.walk(work_dir):
        if 'scalars.json' in files:
            with open(osp.join(root, 'scalars.json')) as f:
                for line in f:
                    rec = json.loads(line)
                    found.update({k: rec[k] for k in keys if k in rec})
    missing = [k for k in keys if k not in found]
    if missing:
        raise RuntimeError(f'{work_dir}: no {missing} in scalars.json')
    return found


def run_one(task, row, seed, args) -> dict:
    name = run_name(task, row, seed)
    wd = osp.join(args.work_dir, name)
    cmd = [sys.executable, osp.join(TOOLS, 'train.py'),
           RECIPES[args.recipe][task], '--work-dir', wd, '--cfg-options',
           *options(task, row, seed, args.data_root, args.cfg_options)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    t0 = time.time()
    with open(osp.join(args.work_dir, f'{name}.log'), 'w') as log:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    minutes = (time.time() - t0) / 60
    if proc.returncode:
        print(f'FAILED {name} (rc {proc.returncode}): see {log.name}',
              flush=True)
        return {}
    result = dict(task=task, row=row, seed=seed, minutes=round(minutes, 2),
                  config=RECIPES[args.recipe][task],
                  threads=args.threads, jobs=args.jobs,
                  metrics=final_metrics(wd, TASKS[task]['metrics']),
                  digest=digest(args.recipe, task, row, seed,
                                args.cfg_options),
                  options=[*ROWS[row], *args.cfg_options])
    from vanillanet_mm.utils.fileio import atomic_write_json
    atomic_write_json(result, osp.join(args.results, f'{name}.json'),
                      indent=1)
    print(f'done {name}: {result["metrics"]} in {minutes:.1f} min',
          flush=True)
    return result


def load_results(results_dir: str) -> list:
    if not osp.isdir(results_dir):
        return []
    out = []
    for f in sorted(os.listdir(results_dir)):
        if f.endswith('.json'):
            with open(osp.join(results_dir, f)) as fh:
                out.append(json.load(fh))
    return out


def todo(args) -> list:
    have = {(r['task'], r['row'], r['seed']): r['digest']
            for r in load_results(args.results)}
    runs = []
    for seed in args.seeds:  # every row's seed k before any seed k + 1
        for task in args.tasks:
            for row in TASKS[task]['rows']:
                key = (task, row, seed)
                if have.get(key) != digest(args.recipe, *key,
                                           args.cfg_options):
                    runs.append(key)
    return runs


def _mean_std(values, digits: int = 3) -> str:
    if len(values) == 1:
        return f'{values[0]:.{digits}f}'
    return (f'{statistics.mean(values):.{digits}f} ± '
            f'{statistics.stdev(values):.{digits}f}')


def table(results: list, recipe: str, extra=()) -> str:
    """Markdown: one line per task and row, mean ± std over the seeds."""
    lines = ['| task | row | seeds | ' + 'metrics (mean ± std) | '
             'minutes per run |', '|---|---|---|---|---|']
    for task, spec in TASKS.items():
        for row in spec['rows']:
            rs = [r for r in results if (r['task'], r['row']) == (task, row)
                  and r['digest'] == digest(recipe, task, row, r['seed'],
                                            extra)]
            if not rs:
                continue
            metrics = ', '.join(
                k.split('/')[-1] + ' ' + _mean_std(
                    [r['metrics'][k] for r in rs], spec['digits'])
                for k in spec['metrics'])
            seeds = ','.join(str(r['seed']) for r in rs)
            minutes = _mean_std([r['minutes'] for r in rs], 1)
            lines.append(f'| {task} | {ROW_TITLES[row]} | {seeds} | '
                         f'{metrics} | {minutes} |')
    return '\n'.join(lines)


def write_into(doc: str, text: str, recipe: str) -> None:
    """Replace what lies between ``<!-- table RECIPE`` and ``<!-- end table
    RECIPE -->`` in ``doc`` by ``text``."""
    from vanillanet_mm.utils.fileio import atomic_write_text
    with open(doc) as f:
        lines = f.read().split('\n')
    try:
        start = next(i for i, ln in enumerate(lines)
                     if ln.startswith(f'<!-- table {recipe}:'))
        end = lines.index(f'<!-- end table {recipe} -->')
    except (StopIteration, ValueError):
        raise SystemExit(f'{doc} has no "<!-- table {recipe}: ... -->" / '
                         f'"<!-- end table {recipe} -->" markers to write '
                         'the table between')
    atomic_write_text('\n'.join(lines[:start + 1] + text.split('\n')
                                 + lines[end:]), doc)


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--recipe', default='base', choices=list(RECIPES),
                   help="the configs the rows change: 'base' (default) the "
                   "demo configs' frozen bases, 'demo' the demo configs")
    p.add_argument('--tasks', nargs='+', default=list(TASKS),
                   choices=list(TASKS))
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--jobs', type=int, default=2,
                   help='runs side by side (default 2)')
    p.add_argument('--threads', type=int, default=1,
                   help='threads per run (default 1)')
    p.add_argument('--results', help='one JSON per finished run (default '
                   'docs/ablation/RECIPE)')
    p.add_argument('--work-dir', help='default work_dirs/ablation/RECIPE')
    p.add_argument('--data-root', default='data/demo')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='more key=value overrides for every run (part of '
                   'the digest)')
    p.add_argument('--table', action='store_true',
                   help='print the table of the results so far and exit')
    p.add_argument('--doc', help='with --table: also write it into this '
                   'markdown file, between its table markers (e.g. '
                   'docs/deep_training_ablation.md)')
    p.add_argument('--dry-run', action='store_true',
                   help='list the runs still to do and exit')
    args = p.parse_args()
    args.results = args.results or osp.join(ROOT, 'docs/ablation',
                                            args.recipe)
    args.work_dir = args.work_dir or osp.join('work_dirs/ablation',
                                              args.recipe)
    if args.table:
        text = table(load_results(args.results), args.recipe,
                     args.cfg_options)
        print(text)
        if args.doc:
            write_into(args.doc, text, args.recipe)
        return
    runs = todo(args)
    print(f'{len(runs)} runs to do: '
          + ', '.join(run_name(*r) for r in runs), flush=True)
    if args.dry_run or not runs:
        return
    from vanillanet_mm.datasets import generate
    generate(args.data_root)
    os.makedirs(args.work_dir, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda r: run_one(*r, args), runs))
    print(table(load_results(args.results), args.recipe, args.cfg_options))


if __name__ == '__main__':
    main()
