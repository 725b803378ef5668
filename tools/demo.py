"""The main job on the embedded demo data, end to end (``make demo``).

Generates data/demo, trains the Mask R-CNN and UperNet demo configs through
tools/train.py (deep training, λ 0 -> 1), tests both through tools/test.py,
re-tests with --deploy (fused backbone), times the backbone in both forms,
saves prediction PNGs, prints one table and writes
work_dirs/demo/summary.json.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

from mmengine.config import Config

import vanillanet_mm  # noqa: F401
from vanillanet_mm.analysis import compare_forms
from vanillanet_mm.apis import build_model
from vanillanet_mm.datasets import generate
from vanillanet_mm.models.checkpoint import read_checkpoint
from vanillanet_mm.utils.fileio import atomic_write_json

TOOLS = osp.dirname(osp.abspath(__file__))
NO_VAL = 10**9  # a train_cfg.val_begin no demo schedule reaches
TASKS = {
    'det': dict(config='configs/mask_rcnn/vanillanet_demo.py',
                metrics={'bbox_mAP': 'coco/bbox_mAP',
                         'segm_mAP': 'coco/segm_mAP'}),
    'seg': dict(config='configs/upernet/vanillanet_demo.py',
                metrics={'mIoU': 'mIoU'},
                # draw every 12th image (mmdet draws all), enough for PNGs
                test_args=('--cfg-options',
                           'default_hooks.visualization.interval=12')),
}


def sh(*args) -> None:
    cmd = [sys.executable, *args]
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def test(config, ckpt, work_dir, *extra) -> dict:
    sh(osp.join(TOOLS, 'test.py'), config, ckpt, '--work-dir', work_dir,
       *extra)
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        return json.load(f)


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
    p.add_argument('--data-root', default='data/demo')
    p.add_argument('--tasks', nargs='+', default=list(TASKS),
                   choices=list(TASKS))
    p.add_argument('--latency-iters', type=int, default=10)
    args = p.parse_args()
    start = time.time()
    generate(args.data_root)
    summary, rows = {}, []
    for task in args.tasks:
        cfg_path = TASKS[task]['config']
        wd = osp.join(args.work_dir, task)
        t0 = time.time()
        # no validation inside training: evaluated once below by test.py
        sh(osp.join(TOOLS, 'train.py'), cfg_path, '--work-dir', wd,
           '--cfg-options', f'train_cfg.val_begin={NO_VAL}')
        summary[f'{task}_train_minutes'] = (time.time() - t0) / 60
        ckpt = last_checkpoint(wd)
        lam = read_checkpoint(ckpt)['state_dict']['backbone._act_learn']
        summary[f'{task}_act_learn_final'] = float(lam)
        vis = osp.join(wd, 'vis')
        plain = test(cfg_path, ckpt, osp.join(wd, 'test'), '--show-dir', vis,
                     *TASKS[task].get('test_args', ()))
        fused = test(cfg_path, ckpt, osp.join(wd, 'test_fused'), '--deploy')
        for name, key in TASKS[task]['metrics'].items():
            summary[name] = plain[key]
            summary[f'{name}_fused'] = fused[key]
            rows.append((name, plain[key], fused[key]))
        summary[f'{task}_predictions'] = copy_pngs(
            vis, osp.join(args.work_dir, 'predictions', task))
        if task == 'det':
            t_train, t_fused, err = backbone_latency(
                cfg_path, ckpt, 192, args.latency_iters)
            summary.update(backbone_ms_train_form=t_train,
                           backbone_ms_fused=t_fused,
                           backbone_fusion_rel_err=err)
    summary['act_learn_final'] = min(v for k, v in summary.items()
                                     if k.endswith('act_learn_final'))
    summary['total_minutes'] = (time.time() - start) / 60
    out = osp.join(args.work_dir, 'summary.json')
    atomic_write_json(summary, out, indent=1)

    print('\n=== VanillaNet demo (deep training λ 0 -> 1, then fused) ===')
    print(f"{'metric':<12}{'trained':>10}{'fused':>10}")
    for name, a, b in rows:
        print(f'{name:<12}{a:>10.3f}{b:>10.3f}')
    print(f"act_learn at the end of training: {summary['act_learn_final']:g}")
    if 'backbone_ms_train_form' in summary:
        print(f"backbone 1x3x192x192 on CPU: training form "
              f"{summary['backbone_ms_train_form']:.1f} ms, fused "
              f"{summary['backbone_ms_fused']:.1f} ms")
    print(f"total {summary['total_minutes']:.1f} min; summary: {out}")


if __name__ == '__main__':
    main()
