"""tools/benchmark_fps.py and tools/deployment/export_backbone_onnx.py as a
user runs them (the whole model: test_model_fps.py)."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torchvision
from torch import nn

from vanillanet_mm.models import SeriesActivation, VanillaNet

ROOT = Path(__file__).parents[2]
EXPORT = 'deployment/export_backbone_onnx.py'


def tool(name, *args):
    return subprocess.run([sys.executable, str(ROOT / 'tools' / name),
                           *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)


BACKBONES = ('vanillanet_train', 'vanillanet_fused', 'vanillanet_fused_torch',
             'resnet50', 'convnext_t')
ARCH, ACT_NUM, SHAPE = 'vanillanet_5', 1, (64, 96)


@pytest.fixture(scope='module')
def backbone_run(tmp_path_factory):
    """One backbone-mode run: (process, fp32 and bf16 records, plot)."""
    tmp = tmp_path_factory.mktemp('backbone')
    out, plot = tmp / 'b.json', tmp / 'b.png'
    proc = tool('benchmark_fps.py', '--mode', 'backbone', '--arch', ARCH,
                '--act-num', ACT_NUM, '--shape', *SHAPE, '--iters', '2',
                '--warmup', '1', '--dtype', 'fp32', 'bf16', '--batch-size',
                '3', '--models', *sorted(BACKBONES), '--out', out, '--plot',
                plot)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads(out.read_text()), plot


def test_backbone_mode_json_and_plot(backbone_run):
    proc, records, plot = backbone_run
    assert {(r['model'], r['dtype']) for r in records} == {
        (m, d) for m in BACKBONES for d in ('fp32', 'bf16')}
    for r in records:
        assert r['median_ms'] > 0
        assert r['shape'] == list(SHAPE) and r['batch_size'] == 3
    assert plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'vanillanet_fused' in proc.stdout


def _records(run, name):
    recs = [r for r in run[1] if r['model'] == name]
    assert [r['dtype'] for r in recs] == ['fp32', 'bf16']
    return recs


def _macs_and_params(model):
    """Multiply-adds of one 1x3xSHAPE forward, counted from each layer's
    output size: conv out * in/groups * kh * kw, linear out * in, and the
    series activations' depthwise convs (a function call, no nn.Conv2d):
    out * (2 act_num + 1)^2. Norms, pools and activations add none."""
    macs = []

    def count(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs.append(out.numel() * m.in_channels // m.groups * kh * kw)
        elif isinstance(m, nn.Linear):
            macs.append(out.numel() * m.in_features)
        else:
            macs.append(out.numel() * (2 * m.act_num + 1)**2)
    handles = [m.register_forward_hook(count) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear, SeriesActivation))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, *SHAPE))
    for h in handles:
        h.remove()
    return sum(macs), sum(p.numel() for p in model.parameters())


@pytest.fixture(scope='module')
def independent_counts():
    """The timed backbones, built here: VanillaNet at λ = 1 and fused;
    torchvision's ResNet-50 and ConvNeXt-T without their heads (the tool
    times timm's, the same layers)."""
    train = VanillaNet(ARCH, act_num=ACT_NUM,
                       out_indices=VanillaNet.multiscale_out_indices(ARCH))
    train.set_act_learn(1.0)
    fused = copy.deepcopy(train)
    fused.switch_to_deploy()
    resnet = torchvision.models.resnet50()
    models = dict(vanillanet_train=train, vanillanet_fused=fused,
                  vanillanet_fused_torch=fused,
                  resnet50=nn.Sequential(*list(resnet.children())[:-2]),
                  convnext_t=torchvision.models.convnext_tiny().features)
    return {name: _macs_and_params(m) for name, m in models.items()}


@pytest.mark.parametrize('name', BACKBONES)
def test_backbone_mode_params(name, backbone_run, independent_counts):
    _, params = independent_counts[name]
    for r in _records(backbone_run, name):
        assert r['params_m'] * 1e6 == pytest.approx(params, abs=0.5)


@pytest.mark.parametrize('name', BACKBONES)
def test_backbone_mode_gmacs(name, backbone_run, independent_counts):
    macs, _ = independent_counts[name]
    for r in _records(backbone_run, name):  # at batch 1, whatever the batch
        assert r['gmacs'] * 1e9 == pytest.approx(macs, rel=1e-9)


@pytest.mark.parametrize('args, match', [
    (('--device', 'cuda'), 'no CUDA GPU is available'),
    (('--shape', '16', '200'), 'smaller than the total stride 32'),
    (('--models', 'alexnet'), "invalid choice: 'alexnet'"),
    (('--dtype', 'fp16'), 'use --device cuda for tf32/fp16'),
    (('--cuda-graph', ), '--cuda-graph times a captured backbone'),
    (('--batch-size', '0'), '--batch-size must be >= 1'),
    (('--mode', 'model', 'configs/mask_rcnn/vanillanet_demo.py'),
     'its own tool now: python tools/analysis_tools/model_fps.py CONFIG'),
    (('--checkpoint', 'x.pth'), 'unrecognized arguments: --checkpoint'),
])
def test_invalid_requests(args, match):
    if 'cuda' in args and torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    proc = tool('benchmark_fps.py', '--arch', 'vanillanet_5', *args)
    assert proc.returncode != 0
    assert match in proc.stderr and 'Traceback' not in proc.stderr


def test_onnx_round_trip(tmp_path):
    out = tmp_path / 'vn.onnx'
    proc = tool(EXPORT, out, '--arch', 'vanillanet_6',
                '--act-num', '2', '--out-indices', '1', '3', '--shape',
                '96', '128')
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = onnx.load(str(out))
    assert [o.name for o in model.graph.output] == ['out0', 'out1']
    ops = {n.op_type for n in model.graph.node}
    assert 'BatchNormalization' not in ops  # it is the fused form
    import onnxruntime as ort
    sess = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    x = np.random.rand(1, 3, 64, 160).astype(np.float32)
    assert sess.run(None, {'input': x})[1].shape == (1, 4096, 2, 5)


def test_onnx_refuses_lambda_below_one(tmp_path):
    proc = tool(EXPORT, tmp_path / 'x.onnx', '--arch',
                'vanillanet_5', '--act-learn', '0.5', '--shape', '64', '64')
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert 'needs act_learn (λ) == 1, got 0.5' in proc.stderr
    assert not (tmp_path / 'x.onnx').exists()


def test_model_flops_both_conventions(tmp_path):
    """Whole-model FLOPs: the series activations' depthwise convs, counted
    independently from their output sizes, are exactly the difference of
    the two conventions; fusion lowers the total."""
    from mmengine.config import Config

    from vanillanet_mm.analysis import model_flops
    from vanillanet_mm.apis import build_model
    from vanillanet_mm.models.blocks import SeriesActivation

    from mm_configs import DET_CFG, write_config
    model = build_model(Config.fromfile(write_config(tmp_path, DET_CFG)))
    model.init_weights()
    model.eval()
    shape = (128, 160)
    outs, handles = {}, []
    for name, m in model.backbone.named_modules():
        if isinstance(m, SeriesActivation):
            handles.append(m.register_forward_hook(
                lambda mod, i, o, name=name: outs.__setitem__(name,
                                                              o.shape)))
    with torch.no_grad():  # 128 x 160 is a multiple of 32: no padding
        model.backbone(torch.rand(1, 3, *shape))
    for h in handles:
        h.remove()
    macs = sum(s[1] * (2 * model.backbone.act_num + 1) ** 2 * s[2] * s[3]
               for s in outs.values())
    train = model_flops(model, shape)
    assert len(outs) == len(model.backbone.stages) + 1  # stem + stages
    assert train['act_gflops'] == pytest.approx(macs / 1e9, rel=1e-9)
    assert train['matmul_gflops'] == 0  # no attention here
    assert train['official_gflops'] == pytest.approx(
        train['gflops'] - train['act_gflops'], rel=1e-9)
    model.backbone.switch_to_deploy()
    fused = model_flops(model, shape)
    assert fused['act_gflops'] == pytest.approx(macs / 1e9, rel=1e-9)
    assert 0 < fused['gflops'] < train['gflops']
