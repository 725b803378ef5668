"""FPS of VanillaNet, training form vs fused, next to the usual backbones.

  backbone mode:
    python tools/benchmark_fps.py --mode backbone --shape 800 1344
  model mode:
    python tools/benchmark_fps.py --mode model CONFIG [--checkpoint CKPT]

Every model runs in ONE process on the same inputs: VanillaNet training form
(λ = 1), the same weights fused with switch_to_deploy() (``vanillanet_fused``:
series activations by the fused Triton kernel on CUDA; ``_torch``: by plain
PyTorch ops), ResNet-50, Swin-T, ConvNeXt-T (backbone mode: timm's models,
the same layers as mmdet's; random init is fine for speed). ``--dtype`` takes
several precisions, timed one after another on the same models. Model mode
times the whole detector/segmentor (data preprocessor, forward,
post-processing) on real images, with ResNet-50 / Swin-T versions
of the same config, and counts each model's GFLOPs and params at --flops-shape
(default 1280×800, the official tables' shape) in two conventions, next to
the official table's values (:mod:`vanillanet_mm.analysis`). ``--batch-size N``
(both modes; default 1) times batches of N images: the table gives the
latency of a batch and the throughput in images/s. Prints a table; --out
writes JSON, --plot a PNG.

On CUDA: cudnn.benchmark is on for every model; each time is reported as
wall time and as GPU time from CUDA events; and before any timing (backbone
mode) the fused backbone with the Triton kernel is compared with the same
weights run by PyTorch ops on the same input, per dtype: the error is printed
and a wrong kernel stops the run (KERNEL_TOL). ``--cuda-graph`` (backbone
mode) also times every model and dtype captured once in a CUDA graph and
replayed (no launch overhead: what a deployed fixed-shape backbone costs),
next to its eager figure; the replay's output is checked against the eager
one first. Model mode warms up on every image it will time (each image size
is tuned by cuDNN and the kernel's autotuner before the clock runs).
"""
import argparse
import copy
import itertools
import os
import os.path as osp
import sys

import torch
from mmengine.analysis import parameter_count
from mmengine.config import Config

import vanillanet_mm  # noqa: F401
from vanillanet_mm.models import VanillaNet
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.errors import ConfigError, InputFileError
from vanillanet_mm.utils.fileio import atomic_write_json
from vanillanet_mm.utils.latency import captured, gpu_ms, measure_ms, summarize
from vanillanet_mm.utils.numerics import max_rel_error
from vanillanet_mm.utils.package import config_path

DTYPES = ('fp32', 'tf32', 'fp16', 'bf16')
VN_FORMS = ('vanillanet_train', 'vanillanet_fused', 'vanillanet_fused_torch')
BASELINES = ('resnet50', 'swin_t', 'convnext_t')
# model mode: the backbones swapped in for VanillaNet, each a config in
# configs/baselines/backbones/ (`backbone`, and its `out_channels`)
MODEL_MODE_BASELINES = ('resnet50', 'swin_t')


# huawei-noah/VanillaNet object_detection/README.md: (GFLOPs, params M) of
# the official VN13 (act_num 4) recipes and their Swin-T counterparts
OFFICIAL_COMPLEXITY = {
    ('MaskRCNN', 'vanillanet'): (420.7, 77.1),
    ('MaskRCNN', 'swin_t'): (263.8, 47.8),
    ('RetinaNet', 'vanillanet'): (396.9, 75.4),
    ('RetinaNet', 'swin_t'): (244.8, 38.5),
}


def vanillanet_forms(arch, act_num):
    """Training form (λ = 1) and the same weights fused, by form name."""
    model = VanillaNet(arch, act_num=act_num,
                       out_indices=VanillaNet.multiscale_out_indices(arch))
    model.set_act_learn(1.0)
    fused = copy.deepcopy(model)
    fused.switch_to_deploy()
    fused_torch = copy.deepcopy(fused)
    fused_torch.set_act_impl('torch')
    return dict(vanillanet_train=model, vanillanet_fused=fused,
                vanillanet_fused_torch=fused_torch)


def baseline_backbone(name, shape):
    """timm's ResNet-50 / Swin-T / ConvNeXt-T with their four stage outputs."""
    import timm
    kwargs = dict(img_size=tuple(shape), strict_img_size=False) \
        if name == 'swin_t' else {}
    return timm.create_model(
        dict(resnet50='resnet50', swin_t='swin_tiny_patch4_window7_224',
             convnext_t='convnext_tiny')[name], pretrained=False,
        features_only=True, out_indices=(-4, -3, -2, -1), **kwargs)


def gmacs(model, x):
    """Multiply-adds of convs, linears and matmuls (not mmengine's default
    total, which adds norm and resampling ops), in G."""
    from mmengine.analysis import FlopAnalyzer
    from mmengine.analysis import jit_handles as h
    analyzer = FlopAnalyzer(model, (x, )).clear_op_handles().set_op_handle(**{
        'aten::_convolution': h.conv_flop_jit, 'aten::addmm': h.addmm_flop_jit,
        'aten::bmm': h.bmm_flop_jit, 'aten::einsum': h.einsum_flop_jit,
        'aten::matmul': h.matmul_flop_jit, 'aten::mm': h.matmul_flop_jit,
        'aten::linear': h.linear_flop_jit})
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analyzer.total() / 1e9


def set_precision(dtype):
    """TF32 on/off; returns the autocast dtype (None: plain fp32)."""
    torch.backends.cuda.matmul.allow_tf32 = dtype == 'tf32'
    torch.backends.cudnn.allow_tf32 = dtype == 'tf32'
    return {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(dtype)


def prepare(model, args, device):
    model = model.to(device)
    model.eval()  # some mmdet backbones' train() returns None
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if args.compile else model


def timed(fn, args, device, dtype, warmup=0, graph=False):
    """Wall (and on CUDA, GPU) times of ``fn()`` under ``dtype``; ``graph``:
    of its CUDA graph's replay, after checking that the replay reproduces
    an eager call (autocast's weight cache is off: graphs forbid it)."""
    autocast_dtype = set_precision(dtype)

    def run():
        with torch.autocast(device.type, dtype=autocast_dtype,
                            enabled=autocast_dtype is not None,
                            cache_enabled=not graph):
            return fn()
    call = run
    if graph:
        call, static = captured(run)
        call()
        err = max_rel_error(run(), static)
        if not err <= KERNEL_TOL[dtype]:
            raise RuntimeError(f'CUDA graph replay differs from the eager '
                               f'call ({dtype}: {err:.2e}); not timing it')
    out = summarize(measure_ms(call, device, max(args.warmup, warmup),
                               args.iters))
    if device.type == 'cuda':
        gpu = gpu_ms(call, args.iters)
        out.update(gpu_median_ms=gpu['median_ms'], gpu_p90_ms=gpu['p90_ms'])
    return dict(out, cuda_graph=graph)


# max |kernel - torch ops| / max |torch ops| over the fused backbone's
# outputs allowed before timing (12 layers of rounding in low precision)
KERNEL_TOL = dict(fp32=1e-3, tf32=1e-2, fp16=2e-2, bf16=5e-2)


def check_kernel(forms, x, args, device):
    """The fused backbone with the Triton kernel against the same weights
    with PyTorch ops, on the same input, before any timing: a wrong kernel
    must not produce a speed figure. Returns {dtype: relative error}."""
    if device.type != 'cuda' or 'vanillanet_fused' not in args.models:
        return {}  # elsewhere both fused forms run the PyTorch ops
    kern, ref = (prepare(copy.deepcopy(forms[k]), args, device) for k in
                 ('vanillanet_fused', 'vanillanet_fused_torch'))
    errs = {}
    for dtype in args.dtype:
        autocast_dtype = set_precision(dtype)
        with torch.no_grad(), torch.autocast(
                'cuda', dtype=autocast_dtype,
                enabled=autocast_dtype is not None):
            errs[dtype] = max_rel_error(ref(x), kern(x))
        print(f'  kernel check {dtype}: fused backbone, Triton kernel vs '
              f'PyTorch ops: max rel err {errs[dtype]:.2e}', file=sys.stderr)
        if not errs[dtype] <= KERNEL_TOL[dtype]:
            raise RuntimeError(
                f'the Triton series activation disagrees with the PyTorch '
                f'ops ({dtype}: {errs[dtype]:.2e} > {KERNEL_TOL[dtype]}); '
                f'refusing to time it')
    return errs


def backbone_records(args, device):
    h, w = args.shape
    x = torch.randn(args.batch_size, 3, h, w)
    forms = vanillanet_forms(args.arch, args.act_num)
    if min(h, w) < forms['vanillanet_train'].total_stride:
        raise ConfigError(f'--shape {h} {w} is smaller than the total stride '
                          f"{forms['vanillanet_train'].total_stride} of "
                          f'{args.arch}')
    records = []
    xd = x.to(device, memory_format=torch.channels_last
              if args.channels_last else torch.contiguous_format)
    kernel_err = check_kernel(forms, xd, args, device)
    for name in args.models:
        model = (forms.pop(name) if name in forms else
                 baseline_backbone(name, args.shape))
        params = parameter_count(model)[''] / 1e6
        macs = gmacs(model, x[:1]) if args.gmacs else None
        model = prepare(model, args, device)
        for dtype, graph in itertools.product(
                args.dtype, (False, True) if args.cuda_graph else (False, )):
            with torch.no_grad():
                t = timed(lambda m=model: m(xd), args, device, dtype,
                          graph=graph)
            if name == 'vanillanet_fused' and dtype in kernel_err:
                t['kernel_max_rel_err'] = kernel_err[dtype]
            records.append(dict(model=name, dtype=dtype, params_m=params,
                                gmacs=macs, **t))
            print(f'  {name} {dtype}{" graph" if graph else ""}: '
                  f'{t["median_ms"]:.2f} ms', file=sys.stderr)
        del model  # free GPU memory before the next model
    return records


def model_records(args, device):
    from mmengine.dataset import Compose, pseudo_collate

    from vanillanet_mm.apis import build_model
    cfg = Config.fromfile(args.config)
    pipeline = [t for t in cfg.test_dataloader.dataset.pipeline
                if t['type'] != 'LoadAnnotations']
    imgs = sorted(osp.join(args.img_dir, f) for f in os.listdir(args.img_dir)
                  if f.lower().endswith(('.png', '.jpg', '.jpeg')))
    if not imgs:
        raise InputFileError(f'no images in --img-dir {args.img_dir}')
    build = {}
    for name in args.models:
        if name in VN_FORMS:
            build[name] = cfg
        elif name in MODEL_MODE_BASELINES:
            c = copy.deepcopy(cfg)
            base = Config.fromfile(
                config_path(f'baselines/backbones/{name}.py'))
            in_ch = base.out_channels
            c.model.backbone = base.backbone
            if 'neck' in c.model:  # as many (last) stages as the neck takes
                n = len(c.model.neck.in_channels)
                c.model.backbone.out_indices = (0, 1, 2, 3)[-n:]
                c.model.neck.in_channels = in_ch[-n:]
            else:
                c.model.decode_head.in_channels = in_ch
                c.model.auxiliary_head.in_channels = in_ch[2]
            build[name] = c
        else:
            print(f'  {name}: skipped in model mode (no mmdet/mmseg '
                  'backbone without new dependencies)', file=sys.stderr)
    records = []
    for name, c in build.items():
        model = build_model(c)
        model.cfg = c
        if name in VN_FORMS:
            if args.checkpoint:  # strictly, as tools/test.py loads
                from vanillanet_mm.models.checkpoint import (
                    check_model_checkpoint,
                )
                model.load_state_dict(
                    check_model_checkpoint(model, args.checkpoint))
            model.backbone.set_act_learn(1.0)
            if name != 'vanillanet_train':
                model.backbone.switch_to_deploy()
            if name == 'vanillanet_fused_torch':
                model.backbone.set_act_impl('torch')
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model).to(device).eval()
        params = parameter_count(model)[''] / 1e6
        flops = (complexity(model, name, params, cfg, args) if args.gmacs
                 else {})
        tf = Compose(pipeline)
        n = args.batch_size
        samples = [tf(dict(img_path=p, img_id=i)) for i, p in
                   enumerate(imgs[:max(args.iters, 1) * n])]
        if len(samples) < n:
            raise InputFileError(f'--batch-size {n} needs at least {n} '
                                 f'images in --img-dir {args.img_dir}')
        batches = [pseudo_collate(samples[i:i + n])
                   for i in range(0, len(samples) - n + 1, n)]
        it = itertools.cycle(batches)

        def step():
            with torch.no_grad():
                model.test_step(next(it))
        for dtype in args.dtype:  # warm-up: every image (size) once
            t = timed(step, args, device, dtype, warmup=len(batches))
            records.append(dict(model=name, dtype=dtype, params_m=params,
                                gmacs=flops.get('gflops'), flops=flops, **t))
            print(f'  {name} {dtype}: {t["median_ms"]:.1f} ms',
                  file=sys.stderr)
    return records


def complexity(model, name, params, cfg, args) -> dict:
    """GFLOPs (both conventions) at --flops-shape, beside the official table
    where the config is an official recipe (VN13, act_num 4)."""
    from vanillanet_mm.analysis import model_flops
    flops = model_flops(model, args.flops_shape)
    bb = cfg.model.backbone
    recipe = bb.get('arch') == 'vanillanet_13' and bb.get('act_num') == 4
    kind = 'vanillanet' if name in VN_FORMS else name
    official = recipe and OFFICIAL_COMPLEXITY.get((type(model).__name__,
                                                   kind))
    flops.update(shape=list(args.flops_shape), params_m=params,
                 official_gflops_table=official[0] if official else None,
                 official_params_m_table=official[1] if official else None)
    return flops


def print_complexity(records) -> None:
    fmt = lambda v: '-' if v is None else f'{v:.1f}'  # noqa: E731
    rows = {r['model']: r['flops'] for r in records if r.get('flops')}
    if not rows:
        return
    h, w = next(iter(rows.values()))['shape']
    print(f'\nwhole model at 1x3x{h}x{w}: GFLOPs (1 multiply-add = 1) and '
          f'params. "act": the series activations\' depthwise convs, '
          f'"matmul": products outside layers (attention); the official '
          f'counter sees neither, "module-hook" is the total less both')
    print(f"{'model':<24}{'GFLOPs':>9}{'act':>7}{'matmul':>8}"
          f"{'module-hook':>12}{'official':>10}{'params M':>10}"
          f"{'official':>10}")
    for name, f in rows.items():
        print(f"{name:<24}{f['gflops']:>9.1f}{f['act_gflops']:>7.1f}"
              f"{f['matmul_gflops']:>8.1f}{f['official_gflops']:>12.1f}"
              f"{fmt(f['official_gflops_table']):>10}"
              f"{f['params_m']:>10.1f}"
              f"{fmt(f['official_params_m_table']):>10}")


FORMS = {'vanillanet_train': 'training (λ=1)', 'vanillanet_fused': 'fused',
         'vanillanet_fused_torch': 'fused, torch ops'}


def finish(records, args, device):
    by = {(r['model'], r['dtype'], r['cuda_graph']): r for r in records}
    for r in records:
        r['batch_size'] = args.batch_size
        r['fps'] = args.batch_size * 1e3 / r['median_ms']  # images/s
        r['form'] = FORMS.get(r['model'], '-')
        for ref, key in (('vanillanet_train', 'speedup_vs_train_form'),
                         ('resnet50', 'speedup_vs_resnet50')):
            base = by.get((ref, r['dtype'], r['cuda_graph']))
            r[key] = base['median_ms'] / r['median_ms'] if base else None
        r.update(device=(torch.cuda.get_device_name(device)
                         if device.type == 'cuda' else 'cpu'),
                 torch=torch.__version__, shape=list(args.shape),
                 mode=args.mode, channels_last=args.channels_last,
                 compile=args.compile, arch=args.arch, act_num=args.act_num)
    fmt = lambda v, f: '-' if v is None else format(v, f)  # noqa: E731
    print(f"\n{args.mode} mode, {records[0]['device']}, batch "
          f"{args.batch_size}, shape "
          f"{args.shape[0]}x{args.shape[1]}, channels_last "
          f"{args.channels_last}, torch {torch.__version__}")
    print(f"{'model':<24}{'form':<18}{'dtype':<6}{'graph':<6}"
          f"{'params M':>9}{'GMACs':>9}"
          f"{'median ms':>11}{'p90 ms':>9}{'GPU ms':>8}{'img/s':>8}"
          f"{'vs train':>9}{'vs R50':>8}")
    for r in sorted(records, key=lambda r: args.dtype.index(r['dtype'])):
        print(f"{r['model']:<24}{r['form']:<18}{r['dtype']:<6}"
              f"{'yes' if r['cuda_graph'] else 'no':<6}{r['params_m']:>9.1f}"
              f"{fmt(r['gmacs'], '.1f'):>9}{r['median_ms']:>11.2f}"
              f"{r['p90_ms']:>9.2f}{fmt(r.get('gpu_median_ms'), '.2f'):>8}"
              f"{r['fps']:>8.2f}"
              f"{fmt(r['speedup_vs_train_form'], '.2f'):>9}"
              f"{fmt(r['speedup_vs_resnet50'], '.2f'):>8}")
    print_complexity(records)
    if args.out:
        atomic_write_json(records, args.out, indent=1)
    if args.plot:
        plot(records, args)


def plot(records, args):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.3 * len(records)))
    names = [f"{r['model']} {r['dtype']}{' graph' * r['cuda_graph']}"
             for r in records]
    ax.barh(names, [r['median_ms'] for r in records],
            color=['tab:orange' if n.startswith('vanillanet') else
                   'tab:gray' for n in names])
    ax.invert_yaxis()
    ax.set_xlabel(f'median latency (ms), batch {args.batch_size}')
    ax.set_title(f"{args.mode}: {records[0]['device']}, "
                 f"{args.shape[0]}x{args.shape[1]}")
    fig.tight_layout()
    fig.savefig(args.plot + '.tmp.png')
    os.replace(args.plot + '.tmp.png', args.plot)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('config', nargs='?', help='config (model mode)')
    p.add_argument('--mode', choices=('backbone', 'model'),
                   default='backbone')
    p.add_argument('--checkpoint', help='weights for the VanillaNet model')
    p.add_argument('--img-dir', default='data/demo/images/validation')
    p.add_argument('--models', nargs='+', default=list(VN_FORMS + BASELINES),
                   choices=VN_FORMS + BASELINES)
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    p.add_argument('--dtype', nargs='+', default=['fp32'], choices=DTYPES,
                   help='one or more; tf32/fp16/bf16 only on CUDA')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true')
    p.add_argument('--cuda-graph', action='store_true',
                   help='backbone mode on CUDA: also time each model '
                        'captured in a CUDA graph')
    p.add_argument('--shape', type=int, nargs=2, default=(800, 1344),
                   metavar=('H', 'W'))
    p.add_argument('--batch-size', type=int, default=1,
                   help='images per timed call (default 1); the table '
                   'adds the throughput in images/s')
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--arch', default='vanillanet_13',
                   choices=sorted(VanillaNet.arch_settings))
    p.add_argument('--act-num', type=int, default=4)
    p.add_argument('--no-gmacs', dest='gmacs', action='store_false',
                   help='skip the (slow on CPU) MAC / FLOP count')
    p.add_argument('--flops-shape', type=int, nargs=2, default=(1280, 800),
                   metavar=('H', 'W'),
                   help='model mode: input of the FLOP count (official: '
                   '1280 800)')
    p.add_argument('--out', help='write records as JSON here')
    p.add_argument('--plot', help='write a latency bar chart PNG here')
    args = p.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('--device cuda requested but no CUDA GPU is '
                           'available here; use --device cpu')
    if args.cuda_graph and (args.device != 'cuda' or args.mode != 'backbone'
                            or args.compile):
        raise ConfigError('--cuda-graph times a captured backbone: it needs '
                          '--mode backbone --device cuda and no --compile')
    if args.batch_size < 1:
        raise ConfigError(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.mode == 'model' and not args.config:
        raise ConfigError('--mode model needs a CONFIG')
    if args.device == 'cpu' and set(args.dtype) - {'fp32', 'bf16'}:
        raise ConfigError(f'--dtype {" ".join(args.dtype)}: the CPU runs fp32 '
                         'and bf16 only; use --device cuda for tf32/fp16')
    device = torch.device(args.device)
    # cuDNN picks its fastest algorithms for every model alike
    torch.backends.cudnn.benchmark = device.type == 'cuda'
    torch.manual_seed(0)
    records = (backbone_records if args.mode == 'backbone' else
               model_records)(args, device)
    finish(records, args, device)


if __name__ == '__main__':
    run_cli(main, 'benchmark_fps')
