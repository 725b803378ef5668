"""tools/analysis_tools/model_fps.py as a user runs it: the whole demo
detector, training form vs fused and the baselines, its params and GFLOPs
recounted here independently, its records, its guarded checkpoint load."""
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from torch.utils._python_dispatch import TorchDispatchMode

from vanillanet_mm.apis import build_model
from vanillanet_mm.models import SeriesActivation

ROOT = Path(__file__).parents[2]
DET_DEMO = 'configs/mask_rcnn/vanillanet_demo.py'
SEG_DEMO = 'configs/upernet/vanillanet_demo.py'
MODELS = ('vanillanet_train', 'vanillanet_fused', 'resnet50', 'swin_t')
FLOPS_SHAPE = (128, 160)
# The demo with every proposal kept (no RPN NMS, no size filter): the RoI
# heads then see max_per_img proposals whatever the weights and the input,
# so their FLOPs can be recounted here.
ALL_PROPOSALS = f"""
_base_ = '{ROOT / DET_DEMO}'
model = dict(test_cfg=dict(rpn=dict(nms=dict(iou_threshold=1.0),
                                    min_bbox_size=-1)))
"""
aten = torch.ops.aten


def model_fps(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / 'tools/analysis_tools/model_fps.py'),
         *map(str, args)], capture_output=True, text=True, timeout=900,
        cwd=ROOT)


@pytest.fixture(scope='module')
def img_dir(tmp_path_factory):
    from vanillanet_mm.datasets import generate
    root = tmp_path_factory.mktemp('demo')
    generate(str(root), num_train=1, num_val=3, size=128)
    return root / 'images/validation'


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp('config') / 'demo_all_proposals.py'
    path.write_text(ALL_PROPOSALS)
    return str(path)


@pytest.fixture(scope='module')
def run(config, img_dir, tmp_path_factory):
    """One run on the demo Mask R-CNN: (process, records)."""
    out = tmp_path_factory.mktemp('fps') / 'm.json'
    proc = model_fps(config, '--img-dir', img_dir, '--models', *MODELS,
                     '--iters', 1, '--warmup', 0, '--batch-size', 2,
                     '--flops-shape', *FLOPS_SHAPE, '--out', out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads(out.read_text())


def test_records_hold_what_was_measured(run, config, img_dir):
    """Per model: its timing, the settings that shaped it, its params and
    GFLOPs (with the shape counted at); no backbone arch/shape/act_num."""
    _, records = run
    assert [r['model'] for r in records] == list(MODELS)
    keys = {'model', 'form', 'config', 'checkpoint', 'device', 'torch',
            'threads', 'dtype', 'batch_size', 'images', 'img_dir', 'iters',
            'warmup', 'median_ms', 'p90_ms', 'images_per_s', 'params_m',
            'flops', 'speedup_vs_train_form', 'speedup_vs_resnet50'}
    forms = dict(vanillanet_train='training (λ=1)', vanillanet_fused='fused',
                 resnet50='-', swin_t='-')
    for r in records:
        assert set(r) == keys
        assert set(r['flops']) == {'shape', 'gflops', 'act_gflops',
                                   'matmul_gflops', 'official_gflops'}
        assert r['form'] == forms[r['model']]
        assert (r['config'], r['checkpoint'], r['device'], r['dtype']) == (
            config, None, 'cpu', 'fp32')
        # 3 images, 1 call of 2: one batch of 2, warmed up once
        assert (r['batch_size'], r['images'], r['iters'], r['warmup']) == (
            2, 2, 1, 1)
        assert r['img_dir'] == str(img_dir)
        assert r['flops']['shape'] == list(FLOPS_SHAPE)
        assert 0 < r['median_ms'] <= r['p90_ms']
        assert r['images_per_s'] == pytest.approx(2e3 / r['median_ms'])
    ms = {r['model']: r['median_ms'] for r in records}
    for r in records:
        assert r['speedup_vs_train_form'] == pytest.approx(
            ms['vanillanet_train'] / r['median_ms'])
        assert r['speedup_vs_resnet50'] == pytest.approx(
            ms['resnet50'] / r['median_ms'])


class _Count(TorchDispatchMode):
    """mmengine's FLOP convention recounted at the dispatcher, from each
    operator's tensors: a multiply-add of a conv or matrix product = 1, an
    eval BN 2 per element, a layer/group norm 5, a nearest resize 1 per
    output element, a bilinear resize or grid sample 4. ``bmm``: the batched
    products (attention's; no layer runs one)."""

    def __init__(self):
        super().__init__()
        self.total = self.bmm = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = func.overloadpacket
        if op is aten.convolution:
            x, w, transposed = args[0], args[1], args[6]
            # transposed: w is (in, out / groups, k...), one MAC per input
            n = (x if transposed else out).numel() * w[0].numel()
            self.total += n
        elif op in (aten.mm, aten.addmm, aten.bmm):
            n = args[-2 if op is aten.addmm else 0].numel() * out.shape[-1]
            self.total += n
            self.bmm += n if op is aten.bmm else 0
        elif op in (aten.native_batch_norm,
                    aten._native_batch_norm_legit_no_training):
            self.total += args[0].numel() * (1 if args[1] is None else 2)
        elif op in (aten.native_layer_norm, aten.native_group_norm):
            self.total += args[0].numel() * 5
        elif op is aten.upsample_nearest2d:
            self.total += out.numel()
        elif op in (aten.upsample_bilinear2d, aten.grid_sampler_2d):
            self.total += 4 * out.numel()
        return out


def _counts(model):
    """(params, total FLOPs, batched-product FLOPs, series-activation
    FLOPs) of ``model._forward`` on one 1x3xFLOPS_SHAPE image."""
    from mmdet.structures import DetDataSample
    h, w = FLOPS_SHAPE
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
    act = []
    handles = [m.register_forward_hook(
        lambda m, i, o: act.append(o.numel() * (2 * m.act_num + 1)**2))
        for m in model.modules() if isinstance(m, SeriesActivation)]
    count = _Count()
    with torch.no_grad(), count:
        model.eval()._forward(torch.rand(1, 3, h, w), [sample])
    for handle in handles:
        handle.remove()
    return (sum(p.numel() for p in model.parameters()), count.total,
            count.bmm, sum(act))


@pytest.fixture(scope='module')
def independent_counts(config):
    """The four models, built here from the demo config: VanillaNet as
    configured and a fused copy; mmdet's ResNet-50 and Swin-T (the configs'
    backbone dicts) feeding the FPN their four stages."""
    cfg = Config.fromfile(config)
    train = build_model(cfg)
    fused = copy.deepcopy(train)
    fused.backbone.switch_to_deploy()
    models = dict(vanillanet_train=train, vanillanet_fused=fused)
    for name in ('resnet50', 'swin_t'):
        base = Config.fromfile(ROOT / f'configs/baselines/backbones/{name}.py')
        c = copy.deepcopy(cfg)
        c.model.backbone = base.backbone
        c.model.neck.in_channels = base.out_channels
        models[name] = build_model(c)
    return {name: _counts(m) for name, m in models.items()}


@pytest.mark.parametrize('name', MODELS)
def test_params_and_gflops_counted_independently(name, run,
                                                 independent_counts):
    params, total, bmm, act = independent_counts[name]
    r = next(r for r in run[1] if r['model'] == name)
    f = r['flops']
    assert r['params_m'] * 1e6 == pytest.approx(params, abs=0.5)
    assert f['gflops'] * 1e9 == pytest.approx(total, rel=1e-9)
    assert f['matmul_gflops'] * 1e9 == pytest.approx(bmm, rel=1e-9)
    assert f['act_gflops'] * 1e9 == pytest.approx(act, rel=1e-9)
    assert f['official_gflops'] * 1e9 == pytest.approx(
        total - bmm - act, rel=1e-9)
    assert (bmm > 0) == (name == 'swin_t')  # attention's products
    assert (act > 0) == name.startswith('vanillanet')


def _table(stdout, header):
    """The rows of the printed table whose header starts with ``header``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith(header)) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def test_json_matches_printed_table(run):
    proc, records = run
    by = {r['model']: r for r in records}
    timing = _table(proc.stdout, 'model                   form')
    assert len(timing) == len(records)
    for line in timing:
        name, form = line[:24].strip(), line[24:42].strip()
        r = by[name]
        cells = line[42:].split()
        assert [form, *cells] == [
            r['form'], r['dtype'], f"{r['params_m']:.2f}",
            f"{r['median_ms']:.1f}", f"{r['p90_ms']:.1f}",
            f"{r['images_per_s']:.2f}", f"{r['speedup_vs_train_form']:.2f}",
            f"{r['speedup_vs_resnet50']:.2f}"]
    flops = _table(proc.stdout, 'model                      GFLOPs')
    assert len(flops) == len(records)
    for line in flops:
        name, *cells = line.split()
        r = by[name]
        f = r['flops']
        assert cells == [f"{f['gflops']:.2f}", f"{f['act_gflops']:.2f}",
                         f"{f['matmul_gflops']:.2f}",
                         f"{f['official_gflops']:.2f}", '-',
                         f"{r['params_m']:.2f}", '-']
    h, w = FLOPS_SHAPE
    assert f'GFLOPs at 1x3x{h}x{w}' in proc.stdout
    assert re.search(r'\bGMACs\b', proc.stdout) is None


def _checkpoint(path, act_learn=1.0, deploy=False):
    """The demo Mask R-CNN's weights at λ = ``act_learn`` (fused:
    ``deploy``), saved as mmengine saves them."""
    model = build_model(Config.fromfile(ROOT / DET_DEMO))
    model.backbone.set_act_learn(act_learn)
    if deploy:
        model.backbone.switch_to_deploy()
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


@pytest.mark.parametrize('act_learn, deploy, match', [
    (0.5, False, 'fusing needs act_learn (λ) = 1, but'),
    (1.0, True, 'holds the deploy layout but the model was built in the '
                'training layout'),
])
def test_refuses_checkpoint_it_cannot_time(act_learn, deploy, match,
                                           tmp_path, img_dir):
    """A checkpoint at λ ≠ 1 (fusing would change it) or in another layout:
    the package's one-line error before anything runs, no output file."""
    ckpt = _checkpoint(tmp_path / 'ckpt.pth', act_learn, deploy)
    out = tmp_path / 'm.json'
    proc = model_fps(DET_DEMO, '--checkpoint', ckpt, '--img-dir', img_dir,
                     '--models', 'vanillanet_train', 'vanillanet_fused',
                     '--iters', 1, '--no-flops', '--out', out)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    [error] = [line for line in proc.stderr.splitlines()
               if line.startswith('model_fps: error: ')]
    assert match in error and str(ckpt) in error
    assert not out.exists() and ' ms' not in proc.stdout


def test_training_form_alone_at_its_own_lambda(tmp_path, img_dir):
    """λ ≠ 1 without a fused form: loaded as it is, timed at that λ."""
    ckpt = _checkpoint(tmp_path / 'ckpt.pth', 0.5)
    out = tmp_path / 'm.json'
    proc = model_fps(DET_DEMO, '--checkpoint', ckpt, '--img-dir', img_dir,
                     '--models', 'vanillanet_train', '--iters', 1,
                     '--no-flops', '--out', out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [r] = json.loads(out.read_text())
    assert (r['form'], r['checkpoint']) == ('training (λ=0.5)', str(ckpt))
    assert 'flops' not in r and 'speedup_vs_resnet50' not in r


@pytest.mark.slow
def test_segmentor_and_its_baselines(tmp_path, img_dir):
    """UperNet: the baselines feed the decode and auxiliary heads."""
    out = tmp_path / 'm.json'
    proc = model_fps(SEG_DEMO, '--img-dir', img_dir, '--models', *MODELS,
                     'vanillanet_fused_torch', '--iters', 1,
                     '--flops-shape', 64, 64, '--out', out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = json.loads(out.read_text())
    assert [r['model'] for r in records] == [*MODELS,
                                             'vanillanet_fused_torch']
    flops = {r['model']: r['flops'] for r in records}
    assert flops['swin_t']['matmul_gflops'] > 0
    assert flops['vanillanet_fused']['gflops'] == flops[
        'vanillanet_fused_torch']['gflops']


@pytest.mark.parametrize('args, match', [
    (('--device', 'cuda'), 'no CUDA GPU is available'),
    (('--dtype', 'fp16'), 'use --device cuda for tf32/fp16'),
    (('--batch-size', '0'), '--batch-size and --iters must be >= 1'),
    (('--img-dir', 'no/such/dir'), '--img-dir no/such/dir is not a folder'),
    (('--checkpoint', 'no/such.pth'), 'file not found: no/such.pth'),
    (('--models', 'convnext_t'), "invalid choice: 'convnext_t'"),
])
def test_invalid_requests(args, match):
    if 'cuda' in args and torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    proc = model_fps(DET_DEMO, *args)
    assert proc.returncode != 0
    assert match in proc.stderr and 'Traceback' not in proc.stderr
