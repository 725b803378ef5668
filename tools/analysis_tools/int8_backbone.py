"""INT8 latency of the fused VanillaNet backbone on the CPU: ONNX Runtime
INT8 next to ONNX Runtime fp32 and PyTorch, in one process.

  python tools/analysis_tools/int8_backbone.py [--arch vanillanet_13]
      [--act-num 4] [--checkpoint CKPT] [--shape 800 1344]
      [--calib-images 8] [--img-dir DIR] [--threads 2] [--repeats 5]
      [--save-dir DIR] [--out REPORT.json]

1. The fused backbone (``act_impl='torch'``), from CKPT or with random
   weights whose BN layers get non-trivial statistics before fusing, so the
   fused weights have a realistic per-channel spread.
2. Exported to ONNX, fp32, input fixed at 1×3×H×W.
3. Quantized by :func:`vanillanet_mm.deploy.quantize.quantize` (QDQ, INT8
   weights per output channel, UINT8 activations, Conv nodes only, minmax)
   calibrated on ``--calib-images`` N inputs: the first N images of
   ``--img-dir`` (resized to H×W, ImageNet mean/std), or without it N
   standard-normal random inputs (a normalised image's scale).
4. PyTorch (``torch.set_num_threads(--threads)``), ONNX Runtime fp32 and
   ONNX Runtime INT8 (``intra_op_num_threads=--threads``) timed on one more
   input, held out of calibration (the image after the first N, or another
   random input): ``--warmup`` calls each, then ``--repeats`` interleaved
   rounds (one call of each form a round, the order rotating); median and
   p90 ms. The INT8 outputs' max relative error, max|int8 - fp32| /
   max|fp32| per output, is against ONNX Runtime fp32 on that input.

Prints a table; ``--out`` writes the report as JSON (atomically);
``--save-dir`` keeps ``fp32.onnx``, ``int8.onnx`` and the held-out input
``input.npy``. The process's peak RSS after export and after calibration
are in the report: minmax calibration keeps each tensor's min and max, not
the tensor, so its memory does not grow with N (VN13 at 800×1344:
docs/benchmarks.md).
"""
import argparse
import os
import os.path as osp
import platform
import resource
import sys
import tempfile
import time

import numpy as np
import torch

import vanillanet_mm  # noqa: F401
from vanillanet_mm.deploy.backbone_onnx import (
    check_shape,
    export_backbone,
    fused_backbone,
)
from vanillanet_mm.deploy.quantize import quantize, require_quantizer
from vanillanet_mm.models import VanillaNet
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.errors import ConfigError, InputFileError
from vanillanet_mm.utils.fileio import atomic_path, atomic_write_json
from vanillanet_mm.utils.latency import summarize

FORMS = ('pytorch_fused', 'ort_fp32', 'ort_int8')
LABELS = dict(pytorch_fused='PyTorch, fused', ort_fp32='ONNX Runtime fp32',
              ort_int8='ONNX Runtime INT8')
MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # ImageNet, RGB
STD = np.array([58.395, 57.12, 57.375], np.float32)
IMG_EXTS = ('.png', '.jpg', '.jpeg', '.bmp')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--arch', default='vanillanet_13',
                   choices=sorted(VanillaNet.arch_settings))
    p.add_argument('--act-num', type=int, default=4)
    p.add_argument('--out-indices', type=int, nargs='+', default=None)
    p.add_argument('--checkpoint', help='weights (any layout the backbone '
                   'loads); without it they are random')
    p.add_argument('--shape', type=int, nargs=2, default=(800, 1344),
                   metavar=('H', 'W'))
    p.add_argument('--calib-images', type=int, default=8, metavar='N')
    p.add_argument('--img-dir', help='calibration images (N + 1 or more: '
                   'the one after the first N is timed); default: random')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--save-dir', help='keep fp32.onnx, int8.onnx and '
                   'input.npy here')
    p.add_argument('--out', help='report JSON')
    args = p.parse_args()
    for name, low in (('calib_images', 1), ('threads', 1), ('repeats', 1),
                      ('warmup', 0)):
        if getattr(args, name) < low:
            raise ConfigError(f'--{name.replace("_", "-")} must be >= {low}, '
                              f'got {getattr(args, name)}')
    return args


def load_images(img_dir, n, shape):
    """The first ``n`` images of ``img_dir`` (sorted by name), each as a
    1×3×H×W float32 array: RGB, resized to ``shape``, ImageNet mean/std."""
    import cv2
    if not osp.isdir(img_dir):
        raise InputFileError(f'--img-dir {img_dir} is not a folder')
    files = sorted(f for f in os.listdir(img_dir)
                   if f.lower().endswith(IMG_EXTS))
    if len(files) < n:
        raise InputFileError(
            f'--img-dir {img_dir} has {len(files)} images '
            f'({", ".join(IMG_EXTS)}); needs {n}: --calib-images to '
            'calibrate and one more to time')
    out = []
    for f in files[:n]:
        img = cv2.imread(osp.join(img_dir, f), cv2.IMREAD_COLOR)
        if img is None:
            raise InputFileError(f'cannot read {osp.join(img_dir, f)}')
        img = cv2.resize(img[..., ::-1], (shape[1], shape[0]),
                         interpolation=cv2.INTER_LINEAR)
        x = (img.astype(np.float32) - MEAN) / STD
        out.append(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    return out


def inputs_for(args):
    """(calibration inputs, held-out input, description)."""
    n = args.calib_images
    if args.img_dir:
        xs = load_images(args.img_dir, n + 1, args.shape)
        return xs[:n], xs[n], (f'{n} images of {args.img_dir} (resized, '
                               'ImageNet mean/std)')
    rng = np.random.default_rng(args.seed)
    xs = [rng.standard_normal((1, 3, *args.shape), dtype=np.float32)
          for _ in range(n + 1)]
    return xs[:n], xs[n], (f'{n} random standard-normal inputs (no '
                           '--img-dir)')


def peak_rss_gib():
    """The process's peak resident memory so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def max_rel_errors(ref, other):
    """max |other - ref| / max |ref| per output pair, in float64."""
    return [float(np.abs(o.astype(np.float64) - r).max() /
                  np.abs(r.astype(np.float64)).max())
            for r, o in zip(ref, other)]


def interleaved(fns, warmup, repeats):
    """``warmup`` calls of each, then ``repeats`` rounds of one timed call
    of each (the order rotating by one each round); ms per call, and each
    function's last output."""
    names = list(fns)
    outs = {}
    for name in names:
        for _ in range(warmup):
            outs[name] = fns[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            outs[name] = fns[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times, outs


def run(args, work_dir):
    require_quantizer()
    import onnxruntime as ort
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = fused_backbone(args.arch, args.act_num, args.out_indices,
                           args.checkpoint, random_bn_seed=args.seed)
    check_shape(model, args.shape)
    calib, x, calib_desc = inputs_for(args)
    fp32, int8 = (osp.join(work_dir, f) for f in ('fp32.onnx', 'int8.onnx'))
    t0 = time.perf_counter()
    export_backbone(model, fp32, args.shape, args.opset, dynamic=False)
    t1 = time.perf_counter()
    rss_export = peak_rss_gib()
    settings = quantize(fp32, int8, calib)
    t2 = time.perf_counter()
    rss_calib = peak_rss_gib()
    del calib
    if args.save_dir:
        with atomic_path(osp.join(work_dir, 'input.npy')) as tmp, \
                open(tmp, 'wb') as f:
            np.save(f, x)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sessions = {name: ort.InferenceSession(
        path, opts, providers=['CPUExecutionProvider'])
        for name, path in (('ort_fp32', fp32), ('ort_int8', int8))}
    xt = torch.from_numpy(x)

    @torch.inference_mode()
    def pytorch():
        return [o.numpy() for o in model(xt)]

    fns = dict(pytorch_fused=pytorch,
               ort_fp32=lambda: sessions['ort_fp32'].run(None, {'input': x}),
               ort_int8=lambda: sessions['ort_int8'].run(None, {'input': x}))
    load_before = os.getloadavg()[0]
    times, outs = interleaved(fns, args.warmup, args.repeats)
    load_after = os.getloadavg()[0]
    stats = {name: dict(summarize(times[name]), times_ms=times[name])
             for name in FORMS}
    med = {name: stats[name]['median_ms'] for name in FORMS}
    names = [o.name for o in sessions['ort_fp32'].get_outputs()]
    return dict(
        arch=args.arch, act_num=args.act_num, shape=list(args.shape),
        batch_size=1, out_indices=list(model.out_indices),
        weights=(args.checkpoint or 'random (BN statistics and affine '
                 'parameters randomised before fusing)'),
        calibration=dict(settings, inputs=calib_desc),
        threads=args.threads, warmup=args.warmup, repeats=args.repeats,
        forms=stats,
        speedup_int8_vs_ort_fp32=med['ort_fp32'] / med['ort_int8'],
        speedup_int8_vs_pytorch=med['pytorch_fused'] / med['ort_int8'],
        int8_vs_ort_fp32_max_rel_err=dict(zip(names, max_rel_errors(
            outs['ort_fp32'], outs['ort_int8']))),
        ort_fp32_vs_pytorch_max_rel_err=dict(zip(names, max_rel_errors(
            outs['pytorch_fused'], outs['ort_fp32']))),
        model_mb={name: osp.getsize(path) / 2**20
                  for name, path in (('fp32', fp32), ('int8', int8))},
        export_s=t1 - t0, quantize_s=t2 - t1,
        peak_rss_gib_after_export=rss_export,
        peak_rss_gib_after_calibration=rss_calib,
        peak_rss_gib=peak_rss_gib(),
        load_avg_1min=dict(before_timing=load_before,
                           after_timing=load_after),
        cpu=cpu_name(), cpu_count=os.cpu_count(),
        onnxruntime=ort.__version__, torch=torch.__version__)


def print_report(r):
    h, w = r['shape']
    print(f"fused {r['arch']} act_num {r['act_num']}, 1x3x{h}x{w}, "
          f"threads {r['threads']}; weights: {r['weights']}")
    cal = r['calibration']
    print(f"INT8: {cal['format']}, {cal['weights']}, {cal['activations']}, "
          f"{cal['method']}, {cal['quantized_nodes']}/{cal['nodes']} Conv "
          f"nodes; calibrated on {cal['inputs']} in {r['quantize_s']:.0f} s, "
          f"peak RSS {r['peak_rss_gib_after_calibration']:.1f} GiB")
    print(f"{'form':<20}{'median ms':>11}{'p90 ms':>10}{'speed-up':>10}")
    int8 = r['forms']['ort_int8']['median_ms']
    for name in FORMS:
        t = r['forms'][name]
        print(f"{LABELS[name]:<20}{t['median_ms']:>11.1f}{t['p90_ms']:>10.1f}"
              f"{t['median_ms'] / int8:>9.2f}x")
    print(f"(speed-up: this form's median / INT8's; median of "
          f"{r['repeats']} interleaved rounds after {r['warmup']} warm-up; "
          f"1-min load average {r['load_avg_1min']['before_timing']:.1f} "
          f"before, {r['load_avg_1min']['after_timing']:.1f} after)")
    errs = ', '.join(f'{k} {v:.2e}' for k, v in
                     r['int8_vs_ort_fp32_max_rel_err'].items())
    print(f'INT8 vs ONNX Runtime fp32, max relative error: {errs}')
    errs = max(r['ort_fp32_vs_pytorch_max_rel_err'].values())
    print(f'ONNX Runtime fp32 vs PyTorch, max relative error: {errs:.2e}')


def main():
    args = parse_args()
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        report = run(args, args.save_dir)
    else:
        with tempfile.TemporaryDirectory(prefix='int8_backbone.') as tmp:
            report = run(args, tmp)
    print_report(report)
    if args.out:
        atomic_write_json(report, args.out, indent=1)
        print(f'wrote {args.out}', file=sys.stderr)


if __name__ == '__main__':
    run_cli(main, 'int8_backbone')
