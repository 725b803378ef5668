"""Test a VanillaNet detector (mmdet) or segmentor (mmseg).

Same flags as mmdet's tools/test.py, plus --deploy (fuse the backbone with
SwitchToDeployHook after loading the checkpoint). The checkpoint must be the
config's model exactly (mmengine would only warn): mismatched keys are one
error. The metrics are also written to WORK_DIR/test_metrics.json.
"""
import argparse
import json
import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner

import vanillanet_mm  # noqa: F401
from vanillanet_mm.apis import (
    add_common_args,
    build_model,
    follow_merged_checkpoint,
    load_config,
)
from vanillanet_mm.models.checkpoint import (
    check_fusable_checkpoint,
    check_model_checkpoint,
)
from vanillanet_mm.utils.cli import user_errors
from vanillanet_mm.utils.compat import scope_runner_loads
from vanillanet_mm.utils.data_check import check_dataset


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    add_common_args(p)
    p.add_argument('--out', help='dump predictions: a .pkl file (mmdet) or '
                   'a folder of label PNGs (mmseg)')
    p.add_argument('--show', action='store_true', help='show predictions')
    p.add_argument('--show-dir', help='save drawn predictions here')
    p.add_argument('--wait-time', type=float, default=2)
    p.add_argument('--deploy', action='store_true',
                   help='fuse VanillaNet (SwitchToDeployHook) before testing')
    return p.parse_args()


def build_cfg(args) -> Config:
    cfg = load_config(args)
    scope = cfg.default_scope
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        vis = cfg.default_hooks.visualization
        vis.draw = True
        if args.show:
            vis.show, vis.wait_time = True, args.wait_time
        if args.show_dir:
            if scope == 'mmdet':
                vis.test_out_dir = osp.abspath(args.show_dir)
            else:
                cfg.visualizer.save_dir = osp.abspath(args.show_dir)
                if 'default_hooks.visualization.interval' not in (
                        args.cfg_options or {}):
                    vis.interval = 1  # every image, unless given
    if args.deploy:
        cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                            dict(type='SwitchToDeployHook')]
    if args.out and scope == 'mmseg':
        cfg.test_evaluator.output_dir = args.out
        cfg.test_evaluator.keep_results = True
    check_dataset(cfg, ('test_dataloader', ))
    follow_merged_checkpoint(cfg, args.checkpoint)
    check_checkpoint(build_model(cfg), args)
    return cfg


def check_checkpoint(model, args) -> None:
    """The checkpoint must be this model's weights, and λ = 1 for --deploy.

    Checked on a model of our own before the runner exists, so a bad
    checkpoint leaves no work dir behind.
    """
    sd = check_model_checkpoint(model, args.checkpoint)
    if args.deploy:
        check_fusable_checkpoint(sd, args.checkpoint,
                                 'test without --deploy')


def main():
    args = parse_args()
    with user_errors('test'):
        cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg)
    scope_runner_loads(runner)  # the checkpoint: runner objects, argparse
    if args.out and cfg.default_scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    if runner.rank == 0:
        with open(osp.join(cfg.work_dir, 'test_metrics.json'), 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=1)


if __name__ == '__main__':
    main()
