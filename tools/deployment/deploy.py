"""Deploy a VanillaNet detector/segmentor with mmdeploy to ONNX Runtime.

  python tools/deployment/deploy.py CONFIG CHECKPOINT --work-dir DIR
      [--dynamic] [--test]

CHECKPOINT in training form (λ = 1) or fused
(tools/model_converters/convert_checkpoint.py to-deploy): the backbone is
fused, then exported through mmdeploy's rewriters to DIR/end2end.onnx for
ONNX Runtime (static input shape by default: the size of the first test
image; --dynamic: any batch/height/width, detection only).
The mmdeploy deploy config is this repo's configs/mmdeploy/ one for the task
(or --deploy-cfg).

With --test: mmdeploy's ONNX Runtime model and the fused PyTorch model are
both evaluated on the config's test set (one image a batch), the ONNX outputs
are compared with mmdeploy's PyTorch model (the same rewrites, in eager mode)
on the first --compare-images test images (and, with --dynamic, at three
other input sizes), and everything goes to DIR/deploy_report.json.

Needs the deploy extra (mmdeploy 1.3.1, see docs/install.md).
"""
import argparse
import os

import vanillanet_mm  # noqa: F401
from vanillanet_mm.apis import add_common_args, load_config
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.errors import InputFileError


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--dynamic', action='store_true',
                   help='dynamic batch/height/width (detection)')
    p.add_argument('--test', action='store_true',
                   help='evaluate and compare; write deploy_report.json')
    p.add_argument('--compare-images', type=int, default=5)
    p.add_argument('--deploy-cfg', help='an mmdeploy deploy config instead '
                   'of configs/mmdeploy/<task>_onnxruntime_<shape>.py (e.g. '
                   'a TensorRT one: not checked here, see docs/deploy.md)')
    p.add_argument('--device', default='cpu',
                   help='where the backend and PyTorch run (TensorRT: cuda:0)')
    add_common_args(p)
    args = p.parse_args()
    if not args.work_dir:
        p.error('--work-dir is required')
    for path in (args.checkpoint, args.deploy_cfg):
        if path and not os.path.isfile(path):
            raise InputFileError(f'file not found: {path}')
    cfg = load_config(args)
    from vanillanet_mm.deploy import deploy
    report = deploy(cfg, args.checkpoint, args.work_dir, dynamic=args.dynamic,
                    test=args.test, compare_images=args.compare_images,
                    deploy_cfg_path=args.deploy_cfg, device=args.device)
    if args.test:
        print(summary(report))
        print(f'wrote {os.path.join(args.work_dir, "deploy_report.json")}')


def summary(report) -> str:
    """The report's headline numbers, a few lines."""
    backend, metrics = report['backend'], report['metrics']
    keys = [k for k in MAIN_METRICS if k in metrics['pytorch_fused']]
    num = dict(report['numerics_vs_mmdeploy_pytorch'])
    sizes = num.pop('dynamic_sizes', {})
    lat = report['latency_ms_per_image']
    lines = [f'{backend} vs PyTorch (fused): ' + ', '.join(
        f'{k} {metrics[backend][k]:.4f} vs {metrics["pytorch_fused"][k]:.4f}'
        for k in keys)]
    for name, row in (('test images', num), *sizes.items()):
        lines.append(f'vs mmdeploy\'s PyTorch model, {name}: ' + ', '.join(
            f'{k} {v:.3g}' for k, v in row.items() if k != 'sizes'))
    lines.append('ms per image (median): ' + ', '.join(
        f'{k} {v["median_ms"]:.1f}' for k, v in lat.items()) +
        f'; {report["seconds"]["total"]:.0f} s in all')
    return '\n'.join(lines)


MAIN_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU', 'aAcc')


if __name__ == '__main__':
    run_cli(main, 'deploy')
