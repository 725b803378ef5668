"""Whole-model FPS of a VanillaNet detector/segmentor, training form vs
fused, next to ResNet-50 / Swin-T versions of the same config.

    python tools/analysis_tools/model_fps.py CONFIG [--checkpoint CKPT]
        [--img-dir data/demo/images/validation] [--models ...]
        [--device cpu|cuda] [--dtype fp32 ...] [--batch-size N]
        [--iters 20] [--warmup 5] [--flops-shape 1280 800 | --no-flops]
        [--out records.json]

Every model runs in ONE process on the same images, through ``test_step``
(data preprocessor, forward, post-processing):

- ``vanillanet_train``: the config's model; ``--checkpoint`` is loaded as
  tools/test.py loads it (a merged checkpoint builds the merged backbone; a
  checkpoint in another layout, or not this model's, is one error);
  without it, the config's initial weights.
- ``vanillanet_fused``, ``vanillanet_fused_torch``: the same weights after
  ``switch_to_deploy()``, the series activations run by the Triton kernel
  on CUDA / by PyTorch ops. Fusion is exact only at λ = 1: a checkpoint at
  another λ is refused before anything runs (``--models vanillanet_train``
  times it alone, at its own λ).
- ``resnet50``, ``swin_t``: the config with mmdet's ResNet-50 / Swin-T in
  place of VanillaNet (configs/baselines/backbones/), random weights.

Each model warms up on every batch it will time (on CUDA, cuDNN and the
kernel's autotuner see each image size before the clock runs), then times
``--iters`` calls on batches of ``--batch-size`` images: median and p90
wall ms (on CUDA also CUDA-event GPU ms), images/s, and the speed-up over
the training form and over ResNet-50. Then, unless ``--no-flops``, each
model's GFLOPs at ``--flops-shape`` (one multiply-add = one FLOP, the
official tables' convention) in two conventions
(:func:`vanillanet_mm.analysis.model_flops`), and for an official recipe
(VN13 act_num 4 Mask R-CNN / RetinaNet) the official table's GFLOPs and
params beside the fused model and Swin-T. One config's generic FPS or FLOPs:
mmdet's tools/analysis_tools/benchmark.py and get_flops.py.
"""
import argparse
import copy
import itertools
import os
import os.path as osp

import torch
from mmengine.analysis import parameter_count
from mmengine.config import Config

import vanillanet_mm  # noqa: F401
from vanillanet_mm.apis import build_model, follow_merged_checkpoint
from vanillanet_mm.models.blocks import check_fusable
from vanillanet_mm.models.checkpoint import (
    check_fusable_checkpoint,
    check_model_checkpoint,
)
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.errors import ConfigError, InputFileError
from vanillanet_mm.utils.fileio import atomic_write_json
from vanillanet_mm.utils.latency import (
    DTYPES,
    gpu_ms,
    measure_ms,
    set_precision,
    summarize,
)
from vanillanet_mm.utils.package import config_path

VN_FORMS = ('vanillanet_train', 'vanillanet_fused', 'vanillanet_fused_torch')
BASELINES = ('resnet50', 'swin_t')
FUSED = {'vanillanet_fused': 'fused',
         'vanillanet_fused_torch': 'fused, torch ops'}
IMAGE_EXTS = ('.png', '.jpg', '.jpeg')

# huawei-noah/VanillaNet object_detection/README.md: (GFLOPs, params M) of
# the official VN13 (act_num 4) recipes, deployed, and their Swin-T
# counterparts
OFFICIAL_COMPLEXITY = {
    ('MaskRCNN', 'vanillanet'): (420.7, 77.1),
    ('MaskRCNN', 'swin_t'): (263.8, 47.8),
    ('RetinaNet', 'vanillanet'): (396.9, 75.4),
    ('RetinaNet', 'swin_t'): (244.8, 38.5),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('config')
    p.add_argument('--checkpoint', help='weights of the VanillaNet model '
                   '(default: the config\'s initial weights)')
    p.add_argument('--img-dir', default='data/demo/images/validation')
    p.add_argument('--models', nargs='+', default=list(VN_FORMS + BASELINES),
                   choices=VN_FORMS + BASELINES)
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    p.add_argument('--dtype', nargs='+', default=['fp32'], choices=DTYPES,
                   help='one or more; tf32/fp16 only on CUDA')
    p.add_argument('--batch-size', type=int, default=1,
                   help='images per timed call (default 1)')
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--warmup', type=int, default=5,
                   help='at least one call per timed batch')
    p.add_argument('--flops-shape', type=int, nargs=2, default=(1280, 800),
                   metavar=('H', 'W'),
                   help='input of the FLOP count (official: 1280 800)')
    p.add_argument('--no-flops', dest='flops', action='store_false',
                   help='skip the (slow on CPU) FLOP count')
    p.add_argument('--out', help='write the records as JSON here')
    args = p.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('--device cuda requested but no CUDA GPU is '
                          'available here; use --device cpu')
    if args.device == 'cpu' and set(args.dtype) - {'fp32', 'bf16'}:
        raise ConfigError(f'--dtype {" ".join(args.dtype)}: the CPU runs fp32 '
                          'and bf16 only; use --device cuda for tf32/fp16')
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 0:
        raise ConfigError('--batch-size and --iters must be >= 1, --warmup '
                          '>= 0')
    for path in (args.config, args.checkpoint):
        if path and not osp.isfile(path):
            raise InputFileError(f'file not found: {path}')
    return args


def vanillanet_model(cfg, args):
    """The config's model (on the CPU) with --checkpoint loaded the guarded
    way: the layout rule, exact keys, and λ = 1 when a fused form is asked
    for. ``cfg`` follows a merged checkpoint."""
    if args.checkpoint:
        follow_merged_checkpoint(cfg, args.checkpoint)
    model = build_model(cfg)
    backbone = getattr(model, 'backbone', None)
    if not hasattr(backbone, 'switch_to_deploy'):
        raise ConfigError(f'{args.config} has no VanillaNet backbone')
    if backbone.deploy:
        raise ConfigError(f'{args.config} builds the fused backbone '
                          '(deploy=True): give its training config, whose '
                          'fused copy this tool makes')
    if args.checkpoint:
        sd = check_model_checkpoint(model, args.checkpoint)
        if set(args.models) & set(FUSED):
            check_fusable_checkpoint(
                sd, args.checkpoint, 'time the training form alone '
                '(--models vanillanet_train)')
        model.load_state_dict(sd)
    elif set(args.models) & set(FUSED):
        check_fusable(backbone.act_learn, False, 'switch_to_deploy()')
    return model


def form_of(name, model):
    """(form label, a copy of ``model`` in that form)."""
    model = copy.deepcopy(model)
    bb = model.backbone
    if name not in FUSED:
        return (f'training (λ={bb.act_learn:g})' if bb.layout == 'training'
                else bb.layout), model
    bb.switch_to_deploy()
    if name == 'vanillanet_fused_torch':
        bb.set_act_impl('torch')
    return FUSED[name], model


def baseline_config(cfg, name):
    """``cfg`` with mmdet's ResNet-50 / Swin-T as its backbone, feeding the
    neck the same (last) stages, or the decode heads all four."""
    c = copy.deepcopy(cfg)
    base = Config.fromfile(config_path(f'baselines/backbones/{name}.py'))
    c.model.backbone = base.backbone
    channels = base.out_channels
    if 'neck' in c.model:
        n = len(c.model.neck.in_channels)
        c.model.backbone.out_indices = (0, 1, 2, 3)[-n:]
        c.model.neck.in_channels = channels[-n:]
    else:
        c.model.decode_head.in_channels = channels
        if c.model.get('auxiliary_head'):
            c.model.auxiliary_head.in_channels = channels[2]
    return c


def load_batches(cfg, args):
    """Batches of the config's test pipeline on --img-dir, enough for
    --iters calls (fewer when the folder has fewer images)."""
    from mmengine.dataset import Compose, pseudo_collate
    if not osp.isdir(args.img_dir):
        raise InputFileError(f'--img-dir {args.img_dir} is not a folder')
    imgs = sorted(osp.join(args.img_dir, f) for f in os.listdir(args.img_dir)
                  if f.lower().endswith(IMAGE_EXTS))
    n = args.batch_size
    if len(imgs) < n:
        raise InputFileError(f'--batch-size {n} needs at least {n} images '
                             f'in --img-dir {args.img_dir}, found '
                             f'{len(imgs)}')
    pipeline = Compose([t for t in cfg.test_dataloader.dataset.pipeline
                        if t['type'] != 'LoadAnnotations'])
    samples = [pipeline(dict(img_path=p, img_id=i)) for i, p in
               enumerate(imgs[:args.iters * n])]
    return [pseudo_collate(samples[i:i + n])
            for i in range(0, len(samples) - n + 1, n)]


def time_model(model, batches, dtype, args, device):
    """Median/p90 ms of ``test_step`` on the batches in turn, after one
    warm-up call per batch (at least --warmup)."""
    autocast_dtype = set_precision(dtype)
    it = itertools.cycle(batches)

    def step():
        with torch.no_grad(), torch.autocast(
                device.type, dtype=autocast_dtype,
                enabled=autocast_dtype is not None):
            model.test_step(next(it))
    warmup = max(args.warmup, len(batches))
    out = dict(warmup=warmup, **summarize(
        measure_ms(step, device, warmup, args.iters)))
    if device.type == 'cuda':
        gpu = gpu_ms(step, args.iters)
        out.update(gpu_median_ms=gpu['median_ms'], gpu_p90_ms=gpu['p90_ms'])
    return out


def official_table(cfg):
    """{'vanillanet' or 'swin_t': (GFLOPs, params M)} of the official table
    when ``cfg`` is an official recipe (VN13 act_num 4 Mask R-CNN or
    RetinaNet), else {}."""
    bb = cfg.model.backbone
    if bb.get('arch') != 'vanillanet_13' or bb.get('act_num') != 4:
        return {}
    detector = cfg.model.type.split('.')[-1]
    return {kind: v for (det, kind), v in OFFICIAL_COMPLEXITY.items()
            if det == detector}


def complexity(model, name, official, args):
    """GFLOPs at --flops-shape in both conventions; the official table's
    values beside the fused model and Swin-T (``official``:
    :func:`official_table`)."""
    from vanillanet_mm.analysis import model_flops
    flops = dict(shape=list(args.flops_shape),
                 **model_flops(model, args.flops_shape))
    table = official.get('vanillanet' if name in FUSED else name)
    if table:
        flops['official_table'] = dict(gflops=table[0], params_m=table[1])
    return flops


def measure(name, form, model, batches, official, args, device):
    """The records of one model: one per dtype."""
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(model).to(device).eval()
    params = parameter_count(model)[''] / 1e6
    flops = complexity(model, name, official, args) if args.flops else None
    where = dict(device=(torch.cuda.get_device_name(device)
                         if device.type == 'cuda' else 'cpu'),
                 torch=torch.__version__)
    if device.type == 'cpu':
        where['threads'] = torch.get_num_threads()
    records = []
    for dtype in args.dtype:
        t = time_model(model, batches, dtype, args, device)
        records.append(dict(
            model=name, form=form, config=args.config,
            checkpoint=args.checkpoint if name in VN_FORMS else None,
            **where, dtype=dtype, batch_size=args.batch_size,
            images=len(batches) * args.batch_size, img_dir=args.img_dir,
            iters=args.iters, **t,
            images_per_s=args.batch_size * 1e3 / t['median_ms'],
            params_m=params, **({} if flops is None else dict(flops=flops))))
        print(f'  {name} {dtype}: {t["median_ms"]:.1f} ms', flush=True)
    return records


def add_speedups(records):
    """Speed-up over the training form and over ResNet-50, where timed."""
    ms = {(r['model'], r['dtype']): r['median_ms'] for r in records}
    for r in records:
        for ref, key in (('vanillanet_train', 'speedup_vs_train_form'),
                         ('resnet50', 'speedup_vs_resnet50')):
            if (ref, r['dtype']) in ms:
                r[key] = ms[ref, r['dtype']] / r['median_ms']


def fmt(value, spec):
    return '-' if value is None else format(value, spec)


def print_tables(records, args):
    r0 = records[0]
    threads = f" ({r0['threads']} threads)" if 'threads' in r0 else ''
    n = r0['images']
    print(f"\n{args.config}: {r0['device']}{threads}, torch {r0['torch']}, "
          f"batch {args.batch_size}, {n} image{'s' * (n != 1)} from "
          f"{args.img_dir}, median of {args.iters} after {r0['warmup']} "
          'warm-up calls')
    gpu = 'gpu_median_ms' in r0  # CUDA-event time, on CUDA only
    print(f"{'model':<24}{'form':<18}{'dtype':<6}{'params M':>9}"
          f"{'median ms':>11}{'p90 ms':>9}{'  GPU ms' if gpu else ''}"
          f"{'img/s':>8}{'vs train':>9}{'vs R50':>8}")
    for r in sorted(records, key=lambda r: args.dtype.index(r['dtype'])):
        gpu_ms_col = f"{r['gpu_median_ms']:>8.1f}" if gpu else ''
        print(f"{r['model']:<24}{r['form']:<18}{r['dtype']:<6}"
              f"{r['params_m']:>9.2f}{r['median_ms']:>11.1f}"
              f"{r['p90_ms']:>9.1f}{gpu_ms_col}{r['images_per_s']:>8.2f}"
              f"{fmt(r.get('speedup_vs_train_form'), '.2f'):>9}"
              f"{fmt(r.get('speedup_vs_resnet50'), '.2f'):>8}")
    rows = {r['model']: r for r in records if 'flops' in r}
    if not rows:
        return
    h, w = args.flops_shape
    print(f'\nGFLOPs at 1x3x{h}x{w} (one multiply-add = one FLOP). "act": '
          "the series activations' depthwise convs, \"matmul\": products "
          'outside layers (attention); the official counter sees neither, '
          '"module-hook" is the total less both')
    print(f"{'model':<24}{'GFLOPs':>9}{'act':>8}{'matmul':>8}"
          f"{'module-hook':>12}{'official':>10}{'params M':>10}"
          f"{'official':>10}")
    for name, r in rows.items():
        f, table = r['flops'], r['flops'].get('official_table', {})
        print(f"{name:<24}{f['gflops']:>9.2f}{f['act_gflops']:>8.2f}"
              f"{f['matmul_gflops']:>8.2f}{f['official_gflops']:>12.2f}"
              f"{fmt(table.get('gflops'), '.1f'):>10}"
              f"{r['params_m']:>10.2f}"
              f"{fmt(table.get('params_m'), '.1f'):>10}")


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    device = torch.device(args.device)
    # cuDNN picks its fastest algorithms for every model alike
    torch.backends.cudnn.benchmark = device.type == 'cuda'
    torch.manual_seed(0)
    # every refusal (checkpoint, config, images) before any timing
    vn = (vanillanet_model(copy.deepcopy(cfg), args)
          if set(args.models) & set(VN_FORMS) else None)
    batches = load_batches(cfg, args)
    official = official_table(cfg)
    records = []
    for name in args.models:
        if name in VN_FORMS:
            form, model = form_of(name, vn)
        else:
            form, model = '-', build_model(baseline_config(cfg, name))
        records += measure(name, form, model, batches, official, args,
                           device)
        del model  # free (GPU) memory before the next one
    add_speedups(records)
    print_tables(records, args)
    if args.out:
        atomic_write_json(records, args.out, indent=1)


if __name__ == '__main__':
    run_cli(main, 'model_fps')
