"""Deploy a VanillaNet detector/segmentor with mmdeploy to ONNX Runtime.

  python tools/deployment/deploy.py CONFIG CHECKPOINT --work-dir DIR
      [--dynamic] [--test] [--int8 [--calib-images 32]
      [--calib-method percentile] [--int8-exclude GROUP ...]
      [--int8-sensitivity]]

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

With --int8: DIR/end2end.onnx is quantized for ONNX Runtime into
DIR/end2end_int8.onnx (QDQ: INT8 weights per output channel, UINT8
activations, Conv nodes only; settings in DIR/int8_calibration.json),
calibrated on the first --calib-images images of the config's training set
prepared as test images are (test pipeline, data preprocessor).
--int8-exclude keeps node groups (backbone.stem, backbone.stages.N.conv,
backbone.stages.N.act, neck, heads; another backbone: backbone.<module>) in
fp32. With --test the INT8 model is evaluated and compared with the fp32
one too; --int8-sensitivity quantizes one group at a time and reports each
one's metrics and drop (which layers lose accuracy).

Needs the deploy extra (mmdeploy 1.3.1, see docs/install.md).
"""
import argparse
import os
from typing import Optional

import vanillanet_mm  # noqa: F401
from vanillanet_mm.apis import add_common_args, load_config
from vanillanet_mm.deploy.pipeline import INT8_NAME, Int8Options
from vanillanet_mm.deploy.quantize import METHODS
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.errors import ConfigError, InputFileError


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
    p.add_argument('--int8', action='store_true',
                   help='also DIR/end2end_int8.onnx (ONNX Runtime)')
    p.add_argument('--calib-images', type=int, metavar='N',
                   help=f'training images to calibrate on (default '
                   f'{Int8Options.calib_images})')
    p.add_argument('--calib-method', metavar='METHOD',
                   help=f'{" | ".join(METHODS)} (default '
                   f'{Int8Options.method})')
    p.add_argument('--int8-exclude', nargs='+', metavar='GROUP',
                   help='node groups kept in fp32')
    p.add_argument('--int8-sensitivity', action='store_true', default=None,
                   help='with --test: each node group quantized alone')
    p.add_argument('--int8-symmetric', action='store_true', default=None,
                   help='signed activations with zero point 0: the QDQ '
                   'model TensorRT accepts (default: uint8, faster in ONNX '
                   'Runtime on x86)')
    add_common_args(p)
    args = p.parse_args()
    if not args.work_dir:
        p.error('--work-dir is required')
    int8 = int8_options(args)
    for path in (args.checkpoint, args.deploy_cfg):
        if path and not os.path.isfile(path):
            raise InputFileError(f'file not found: {path}')
    cfg = load_config(args)
    from vanillanet_mm.deploy import deploy
    report = deploy(cfg, args.checkpoint, args.work_dir, dynamic=args.dynamic,
                    test=args.test, compare_images=args.compare_images,
                    deploy_cfg_path=args.deploy_cfg, device=args.device,
                    int8=int8)
    if args.test:
        print(summary(report))
        if 'int8_sensitivity' in report:
            print(sensitivity_table(report))
        print(f'wrote {os.path.join(args.work_dir, "deploy_report.json")}')


def int8_options(args) -> Optional[Int8Options]:
    """--int8's options (None without it, where its flags are refused)."""
    flags = dict(calib_images='--calib-images', calib_method='--calib-method',
                 int8_exclude='--int8-exclude',
                 int8_sensitivity='--int8-sensitivity',
                 int8_symmetric='--int8-symmetric')
    given = [flag for key, flag in flags.items()
             if getattr(args, key) is not None]
    if not args.int8:
        if given:
            raise ConfigError(f'{", ".join(given)} without --int8: add '
                              '--int8, or leave them out')
        return None
    default = Int8Options()
    return Int8Options(
        calib_images=(default.calib_images if args.calib_images is None
                      else args.calib_images),
        method=args.calib_method or default.method,
        exclude=tuple(args.int8_exclude or ()),
        sensitivity=bool(args.int8_sensitivity),
        symmetric=bool(args.int8_symmetric))


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
    if 'int8' in report:
        lines += int8_lines(report)
    lines.append('ms per image (median): ' + ', '.join(
        f'{k} {v["median_ms"]:.1f}' for k, v in lat.items()) +
        f'; {report["seconds"]["total"]:.0f} s in all')
    return '\n'.join(lines)


def int8_lines(report) -> list:
    """The INT8 model against the fp32 one: metrics, raw outputs."""
    backend, metrics, int8 = (report['backend'], report['metrics'],
                              report['int8'])
    name = INT8_NAME.format(backend)
    keys = [k for k in MAIN_METRICS if k in metrics[backend]]
    return [
        f'INT8 ({int8["method"]}, {int8["calibration_images"]} calibration '
        f'images, {int8["quantized_nodes"]}/{int8["nodes"]} Conv nodes) vs '
        f'fp32 {backend}: ' + ', '.join(
            f'{k} {metrics[name][k]:.4f} vs {metrics[backend][k]:.4f}'
            for k in keys),
        'INT8 vs fp32 outputs, test images: ' + ', '.join(
            f'{k} {v:.3g}' for k, v in report['numerics_int8_vs_fp32'].items()
            if k != 'sizes')]


def sensitivity_table(report) -> str:
    """Each node group quantized alone: its metrics and drop from fp32."""
    table = report['int8_sensitivity']
    keys = [k for k in MAIN_METRICS
            if k in report['metrics'][report['backend']]]
    width = max(len(g) for g in table) + 2
    lines = ['INT8 sensitivity: one node group quantized at a time '
             '(drop = fp32 - INT8)',
             f'{"group":<{width}}{"nodes":>6}' + ''.join(
                 f'{k:>16}{"drop":>9}' for k in keys)]
    for group, row in table.items():
        lines.append(f'{group:<{width}}{row["nodes"]:>6}' + ''.join(
            f'{row["metrics"][k]:>16.4f}{row["drop"][k]:>9.4f}'
            for k in keys))
    return '\n'.join(lines)


MAIN_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU', 'aAcc')


if __name__ == '__main__':
    run_cli(main, 'deploy')
