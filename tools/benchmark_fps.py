"""FPS of the VanillaNet backbone, training form vs fused, next to the usual
backbones.

    python tools/benchmark_fps.py --mode backbone --shape 800 1344

Every backbone runs in ONE process on the same input: VanillaNet training
form (λ = 1), the same weights fused with switch_to_deploy()
(``vanillanet_fused``: series activations by the fused Triton kernel on CUDA;
``_torch``: by plain PyTorch ops), ResNet-50, Swin-T, ConvNeXt-T (timm's
models, the same layers as mmdet's; random init is fine for speed), with
each backbone's params and GMACs (multiply-adds of its convs, linears and
matmuls). ``--dtype`` takes several precisions, timed one after another on
the same models. ``--batch-size N`` (default 1) times batches of N images:
the table gives the latency of a batch and the throughput in images/s.
Prints a table; --out writes JSON, --plot a PNG. The whole detector or
segmentor of a config: tools/analysis_tools/model_fps.py.

On CUDA: cudnn.benchmark is on for every model; each time is reported as
wall time and as GPU time from CUDA events; and before any timing the fused
backbone with the Triton kernel is compared with the same weights run by
PyTorch ops on the same input, per dtype: the error is printed and a wrong
kernel stops the run (KERNEL_TOL). ``--cuda-graph`` also times every model
and dtype captured once in a CUDA graph and replayed (no launch overhead:
what a deployed fixed-shape backbone costs), next to its eager figure; the
replay's output is checked against the eager one first.
"""
import argparse
import copy
import itertools
import os
import sys

import torch
from mmengine.analysis import parameter_count

import vanillanet_mm  # noqa: F401
from vanillanet_mm.models import VanillaNet
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.errors import ConfigError
from vanillanet_mm.utils.fileio import atomic_write_json
from vanillanet_mm.utils.latency import (
    DTYPES,
    captured,
    gpu_ms,
    measure_ms,
    set_precision,
    summarize,
)
from vanillanet_mm.utils.numerics import max_rel_error

VN_FORMS = ('vanillanet_train', 'vanillanet_fused', 'vanillanet_fused_torch')
BASELINES = ('resnet50', 'swin_t', 'convnext_t')
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


def prepare(model, args, device):
    model = model.to(device)
    model.eval()  # some mmdet backbones' train() returns None
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if args.compile else model


def timed(fn, args, device, dtype, graph=False):
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
    out = summarize(measure_ms(call, device, args.warmup, args.iters))
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
    p.add_argument('--mode', choices=('backbone', 'model'),
                   default='backbone', help='backbone (the whole model: '
                   'tools/analysis_tools/model_fps.py)')
    p.add_argument('--models', nargs='+', default=list(VN_FORMS + BASELINES),
                   choices=VN_FORMS + BASELINES)
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    p.add_argument('--dtype', nargs='+', default=['fp32'], choices=DTYPES,
                   help='one or more; tf32/fp16/bf16 only on CUDA')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true')
    p.add_argument('--cuda-graph', action='store_true',
                   help='on CUDA: also time each model captured in a CUDA '
                        'graph')
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
    p.add_argument('--out', help='write records as JSON here')
    p.add_argument('--plot', help='write a latency bar chart PNG here')
    args, unknown = p.parse_known_args()
    if args.mode == 'model':
        raise ConfigError(
            'the whole-model benchmark is its own tool now: python '
            'tools/analysis_tools/model_fps.py CONFIG [--checkpoint CKPT] '
            '(see its --help)')
    if unknown:
        p.error(f'unrecognized arguments: {" ".join(unknown)}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('--device cuda requested but no CUDA GPU is '
                           'available here; use --device cpu')
    if args.cuda_graph and (args.device != 'cuda' or args.compile):
        raise ConfigError('--cuda-graph times a captured backbone: it needs '
                          '--device cuda and no --compile')
    if args.batch_size < 1:
        raise ConfigError(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.device == 'cpu' and set(args.dtype) - {'fp32', 'bf16'}:
        raise ConfigError(f'--dtype {" ".join(args.dtype)}: the CPU runs fp32 '
                         'and bf16 only; use --device cuda for tf32/fp16')
    device = torch.device(args.device)
    # cuDNN picks its fastest algorithms for every model alike
    torch.backends.cudnn.benchmark = device.type == 'cuda'
    torch.manual_seed(0)
    records = backbone_records(args, device)
    finish(records, args, device)


if __name__ == '__main__':
    run_cli(main, 'benchmark_fps')
