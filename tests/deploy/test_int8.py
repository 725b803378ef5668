"""INT8 deployment (tools/deployment/deploy.py --int8): node groups and QDQ
quantization of a tiny exported backbone, the calibration inputs, bad
options, and the demo models (random weights) quantized, evaluated and
compared with the real mmdeploy + onnxruntime."""
import json
import sys

import numpy as np
import pytest
import torch

from vanillanet_mm.utils.errors import ConfigError

from deploy_helpers import (
    DEPLOY,
    DET,
    ROOT,
    SEG,
    assert_one_error,
    demo_config,
    needs_mmdeploy,
    random_checkpoint,
)
from tool_helpers import data_options, tool

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
pytest.importorskip('onnxruntime.quantization')

MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # the demo configs'
STD = np.array([58.395, 57.12, 57.375], np.float32)  # data preprocessors
BASELINES = ROOT / 'configs/baselines'
TINY = dict(dims=[8, 16, 32, 32, 64], strides=[1, 2, 2, 1])
#: INT8 vs fp32 logits, max |difference| / max |fp32|: 8-bit activations
#: round to 1/255 of a tensor's range (±0.2 %), each of the ~20 quantized
#: convs in series adds its own rounding, and the 8-bit weights theirs (a
#: random model: no training made it robust to either): a few % expected,
#: 0.1 allows growth through the layers; 1e-4 would mean nothing quantized
INT8_LOGITS_RELATIVE = (1e-4, 0.1)


def qdq_convs(onnx_file):
    """Per Conv node: its activation comes through QuantizeLinear ->
    DequantizeLinear (``act``) from the node ``act_from``, its weight is an
    INT8 initializer through DequantizeLinear (``weight``) with ``scales``
    scales for ``channels`` output channels."""
    from onnx import numpy_helper
    graph = onnx.load(str(onnx_file)).graph
    producer = {out: node for node in graph.node for out in node.output}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def made_by(tensor, op):
        node = producer.get(tensor)
        return node if node is not None and node.op_type == op else None

    convs = {}
    for node in graph.node:
        if node.op_type != 'Conv':
            continue
        x = made_by(node.input[0], 'DequantizeLinear')
        q = x and made_by(x.input[0], 'QuantizeLinear')
        w = made_by(node.input[1], 'DequantizeLinear')
        weight = w is not None and inits[w.input[0]].dtype == np.int8
        convs[node.name] = dict(
            act=bool(q), weight=weight,
            act_from=getattr(producer.get(q.input[0]) if q else None,
                             'name', None),
            scales=inits[w.input[1]].size if weight else 0,
            channels=(inits[w.input[0]] if weight
                      else inits[node.input[1]]).shape[0])
    return convs


def assert_quantized(onnx_file, groups, quantized):
    """QDQ around every Conv of the ``quantized`` groups, per-channel weight
    scales; the Convs of the other groups in fp32: fp32 weights, and an
    activation quantized only as the output of a quantized Conv (ONNX
    Runtime quantizes a quantized Conv's output, for its integer kernel)."""
    convs = qdq_convs(onnx_file)
    int8 = {n for g in quantized for n in groups[g]}
    for group, nodes in groups.items():
        for name in nodes:
            c = convs[name]
            if group in quantized:
                assert c['act'] and c['weight'], (group, name, c)
                assert c['scales'] == c['channels'], (group, name, c)
            else:
                assert not c['weight'], (group, name, c)
                assert not c['act'] or c['act_from'] in int8, (group, name,
                                                               c)


# ------------------------------------------------- quantize(), node groups
def export_tiny_backbone(path, dynamic=True):
    """A tiny fused VanillaNet (BN statistics randomised before fusing, so
    the fused weights spread per channel) exported alone with torch.onnx."""
    from vanillanet_mm.models import VanillaNet
    from vanillanet_mm.utils.compat import onnx_export_kwargs
    from vanillanet_mm.utils.numerics import randomize_bn
    torch.manual_seed(0)
    model = VanillaNet(TINY, act_num=2, out_indices=(0, 1, 2, 3)).eval()
    randomize_bn(model)
    model.switch_to_deploy()
    model.set_act_impl('torch')
    names = [f'out{i}' for i in range(4)]
    axes = {n: {2: 'h', 3: 'w'} for n in ['input', *names]}
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 3, 64, 64), ), str(path),
                          input_names=['input'], output_names=names,
                          dynamic_axes=axes if dynamic else None,
                          opset_version=17, **onnx_export_kwargs())
    return path


def test_node_groups_and_qdq_quantization(tmp_path):
    from vanillanet_mm.deploy.quantize import (
        node_groups,
        quantize,
        static_input_shape,
    )
    src = export_tiny_backbone(tmp_path / 'fp32.onnx')
    groups = node_groups(str(src))
    stages = len(TINY['strides'])
    expected = ['backbone.stem'] + [f'backbone.stages.{i}.{part}'
                                    for i in range(stages)
                                    for part in ('conv', 'act')]
    assert list(groups) == expected
    assert len(groups['backbone.stem']) == 2  # the conv and its activation
    assert all(len(groups[g]) == 1 for g in expected[1:])
    assert static_input_shape(str(src)) is None
    assert static_input_shape(str(export_tiny_backbone(
        tmp_path / 'static.onnx', dynamic=False))) == (64, 64)

    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, 64, 64), dtype=np.float32)
              for _ in range(4)]
    dst = tmp_path / 'int8.onnx'
    settings = quantize(str(src), str(dst), inputs, 'minmax',
                        exclude=['backbone.stages.1.act'])
    assert settings['fp32_groups'] == ['backbone.stages.1.act']
    assert settings['quantized_nodes'] == settings['nodes'] - 1 == 9
    assert_quantized(dst, groups, set(expected) - {'backbone.stages.1.act'})

    # per output channel: scale = max |w| / 127 (symmetric INT8 weights)
    from onnx import numpy_helper
    fp32 = {i.name: numpy_helper.to_array(i)
            for i in onnx.load(str(src)).graph.initializer}
    graph = onnx.load(str(dst)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    conv = next(n for n in graph.node
                if n.name == groups['backbone.stages.0.act'][0])
    deq = producer[conv.input[1]]
    w = fp32[next(n for n in onnx.load(str(src)).graph.node
                  if n.name == conv.name).input[1]]
    ref = np.abs(w).reshape(len(w), -1).max(1) / 127
    np.testing.assert_allclose(inits[deq.input[1]], ref, rtol=1e-5)
    assert ref.max() / ref.min() > 2  # the channels' ranges do differ
    # the input's (UINT8, min-max): scale = range / 255 with 0 in the range
    quant = next(n for n in graph.node if n.op_type == 'QuantizeLinear'
                 and n.input[0] == 'input')
    lo = min(0., min(float(x.min()) for x in inputs))
    hi = max(0., max(float(x.max()) for x in inputs))
    np.testing.assert_allclose(inits[quant.input[1]], (hi - lo) / 255,
                               rtol=1e-5)

    # INT8 differs from fp32, by little: ONNX Runtime on a held-out input
    x = rng.standard_normal((1, 3, 64, 64), dtype=np.float32)
    ref = ort.InferenceSession(str(src)).run(None, {'input': x})
    got = ort.InferenceSession(str(dst)).run(None, {'input': x})
    rel = [float(np.abs(g - r).max() / np.abs(r).max())
           for r, g in zip(ref, got)]
    assert all(1e-4 < e < 0.1 for e in rel), rel


def test_symmetric_activations_for_tensorrt(tmp_path):
    """--int8-symmetric: every activation QuantizeLinear is INT8 with zero
    point 0 and scale max|x| / 127 (min-max), what TensorRT accepts."""
    from vanillanet_mm.deploy.quantize import quantize
    src = export_tiny_backbone(tmp_path / 'fp32.onnx')
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, 64, 64), dtype=np.float32)
              for _ in range(3)]
    dst = tmp_path / 'int8.onnx'
    settings = quantize(str(src), str(dst), inputs, 'minmax',
                        symmetric=True)
    assert 'zero point 0' in settings['activations']
    from onnx import numpy_helper
    graph = onnx.load(str(dst)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quants = [n for n in graph.node if n.op_type == 'QuantizeLinear']
    assert quants
    for n in quants:
        zero = inits[n.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), n.name
    quant = next(n for n in quants if n.input[0] == 'input')
    top = max(float(np.abs(x).max()) for x in inputs)
    np.testing.assert_allclose(inits[quant.input[1]], top / 127, rtol=1e-5)


def test_one_group_alone_and_a_reused_calibration(tmp_path):
    from vanillanet_mm.deploy.quantize import node_groups, quantize
    src = str(export_tiny_backbone(tmp_path / 'fp32.onnx'))
    groups = node_groups(src)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, 64, 64), dtype=np.float32)
              for _ in range(2)]
    ranges = str(tmp_path / 'ranges.json')
    first = tmp_path / 'stem.onnx'
    settings = quantize(src, str(first), inputs, 'percentile',
                        only=['backbone.stem'], ranges=ranges)
    assert settings['quantized_groups'] == ['backbone.stem']
    assert_quantized(first, groups, {'backbone.stem'})
    # the ranges file is read back: other inputs change nothing
    second = tmp_path / 'stem_again.onnx'
    quantize(src, str(second), [10 * x for x in inputs], 'percentile',
             only=['backbone.stem'], ranges=ranges)
    assert first.read_bytes() == second.read_bytes()
    fresh = tmp_path / 'fresh.onnx'
    quantize(src, str(fresh), [10 * x for x in inputs], 'percentile',
             only=['backbone.stem'])
    assert fresh.read_bytes() != first.read_bytes()


@pytest.mark.parametrize('kwargs, words', [
    (dict(exclude=['neck']), ['no node group neck', 'backbone.stem']),
    (dict(only=['backbone.stem'], exclude=['backbone.stem']),
     ['nothing left to quantize']),
    (dict(method='kl'), ['unknown calibration method', 'percentile']),
])
def test_quantize_refuses_bad_groups_and_methods(tmp_path, kwargs, words):
    from vanillanet_mm.deploy.quantize import quantize
    src = str(export_tiny_backbone(tmp_path / 'fp32.onnx'))
    x = np.zeros((1, 3, 64, 64), np.float32)
    with pytest.raises(ConfigError) as e:
        quantize(src, str(tmp_path / 'int8.onnx'), [x], **kwargs)
    assert '\n' not in str(e.value)
    for w in words:
        assert w in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fp32.onnx']


# ------------------------------------------------------------ calibration
def first_training_images(data, det, num):
    """The first ``num`` training images as the data set lists them
    (COCO: the annotation file's images with instances; ADE layout: the
    folder, sorted)."""
    if det:
        coco = json.loads(
            (data / 'annotations/instances_training.json').read_text())
        with_instances = {a['image_id'] for a in coco['annotations']}
        return [str(data / 'images' / img['file_name'])
                for img in coco['images'] if img['id'] in with_instances
                ][:num]
    return sorted(str(p) for p in (data / 'images/training').glob('*.png')
                  )[:num]


def preprocessed(path):
    """An independent preprocessing of a 192x192 demo image: RGB, mean/std
    of the demo configs, 1x3xHxW (the test pipelines keep its size)."""
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32)
    return ((img - MEAN) / STD).transpose(2, 0, 1)[None]


@pytest.mark.parametrize('det', [False, True], ids=['upernet', 'mask_rcnn'])
def test_calibration_inputs_are_training_images_as_test_images(data, det):
    from vanillanet_mm.apis import build_model
    from vanillanet_mm.deploy.calibration import (
        build_calibration_loader,
        calibration_inputs,
    )
    cfg = demo_config(DET if det else SEG, data, det)
    preprocessor = build_model(cfg).data_preprocessor
    loader = build_calibration_loader(cfg)
    inputs, files = calibration_inputs(loader, preprocessor, 3, (192, 192))
    assert files == first_training_images(data, det, 3)
    for x, path in zip(inputs, files):
        assert x.shape == (1, 3, 192, 192) and x.dtype == np.float32
        np.testing.assert_allclose(x, preprocessed(path), atol=1e-4)
    # more than the set holds: all of it
    assert len(calibration_inputs(loader, preprocessor, 100)[0]) == len(
        loader.dataset) > 0
    with pytest.raises(ConfigError, match='static at .160, 160.*--dynamic'):
        calibration_inputs(loader, preprocessor, 1, (160, 160))


def test_calibration_set_ignores_repeats_and_must_not_be_empty(data,
                                                                tmp_path):
    from vanillanet_mm.deploy.calibration import build_calibration_loader
    cfg = demo_config(SEG, data, False)
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=3, dataset=cfg.train_dataloader.dataset)
    assert len(build_calibration_loader(cfg).dataset) == 8
    empty = dict(json.loads(
        (data / 'annotations/instances_training.json').read_text()),
        images=[], annotations=[])
    (tmp_path / 'empty.json').write_text(json.dumps(empty))
    cfg = demo_config(DET, data, True, **{
        'train_dataloader.dataset.ann_file': str(tmp_path / 'empty.json')})
    with pytest.raises(ConfigError, match='holds no images') as e:
        build_calibration_loader(cfg)
    assert '\n' not in str(e.value)


# ------------------------------------------------------------ bad options
@pytest.fixture(scope='module')
def seg_checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp('seg') / 'm.pth', SEG)


@needs_mmdeploy
@pytest.mark.parametrize('case', ['no_images', 'method', 'no_test',
                                  'empty_set', 'no_quantizer'])
def test_bad_int8_options_write_nothing(data, tmp_path, seg_checkpoint,
                                        monkeypatch, case):
    """Refused with one line before anything is written."""
    from vanillanet_mm.deploy.pipeline import Int8Options, deploy
    options = {}
    int8, words = Int8Options(), []
    if case == 'no_images':
        int8, words = Int8Options(calib_images=0), ['--calib-images 0']
    elif case == 'method':
        int8, words = Int8Options(method='kl'), ['kl', 'minmax']
    elif case == 'no_test':
        int8, words = Int8Options(sensitivity=True), ['add --test']
    elif case == 'empty_set':  # a folder without images of the suffix
        options = {'train_dataloader.dataset.data_prefix.img_path':
                   'images/validation',
                   'train_dataloader.dataset.img_suffix': '.jpg'}
        words = ['holds no images', 'train_dataloader.dataset']
    else:  # onnxruntime without its quantization package
        import onnxruntime
        monkeypatch.delattr(onnxruntime, 'quantization', raising=False)
        monkeypatch.setitem(sys.modules, 'onnxruntime.quantization', None)
        words = ['onnxruntime', "'.[deploy]'"]
    cfg = demo_config(SEG, data, False, **options)
    out = tmp_path / 'out'
    with pytest.raises(ConfigError) as e:
        deploy(cfg, str(seg_checkpoint), str(out), test=case != 'no_test',
               int8=int8)
    assert '\n' not in str(e.value)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert not out.exists()


@needs_mmdeploy
def test_int8_flags_without_int8_are_one_line(tmp_path, seg_checkpoint):
    proc = tool(DEPLOY, SEG, seg_checkpoint, '--work-dir', tmp_path / 'out',
                '--calib-method', 'entropy', '--int8-exclude', 'neck')
    assert_one_error(proc, '--calib-method, --int8-exclude without --int8')
    assert not (tmp_path / 'out').exists()


@needs_mmdeploy
def test_unknown_group_is_one_line_and_no_int8_file(tmp_path, data,
                                                    seg_checkpoint):
    out = tmp_path / 'out'
    proc = tool(DEPLOY, SEG, seg_checkpoint, '--work-dir', out, '--int8',
                '--int8-exclude', 'backbone.stages.9.act', 'neck',
                '--cfg-options', *data_options(data, False))
    assert_one_error(proc, 'no node group backbone.stages.9.act, neck',
                     'backbone.stages.3.act', 'heads')
    # the fp32 export is complete; nothing of INT8, no temporary file
    assert sorted(p.name for p in out.iterdir()) == ['end2end.onnx']


# ------------------------------------------------------------ end to end
def deploy_int8(tmp_path, data, config, ckpt, det, *args):
    out = tmp_path / 'deploy'
    proc = tool(DEPLOY, config, ckpt, '--work-dir', out, '--test', '--int8',
                *args, '--cfg-options', *data_options(data, det))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / 'deploy_report.json').read_text()), proc


def assert_int8_report(report, out):
    """Metrics, differences and latency of the three models; the settings
    file is the report's."""
    metrics = report['metrics']
    fp32, int8 = metrics['onnxruntime'], metrics['onnxruntime_int8']
    assert set(fp32) == set(int8) == set(metrics['pytorch_fused'])
    assert metrics['difference_int8_vs_fp32'] == {
        k: int8[k] - fp32[k] for k in fp32}
    for name in ('onnxruntime', 'onnxruntime_int8', 'pytorch_fused'):
        lat = report['latency_ms_per_image'][name]
        assert lat['images'] == 4 and lat['median_ms'] > 0
    settings = json.loads((out / 'int8_calibration.json').read_text())
    assert settings == report['int8']
    assert report['numerics_int8_vs_fp32']['images'] == 4


@needs_mmdeploy
def test_int8_upernet_end_to_end(tmp_path, data, seg_checkpoint):
    """Random demo UperNet: calibrated on 4 training images, the heads kept
    in fp32, every group's sensitivity; the comparison recomputed with
    onnxruntime on independently preprocessed test images."""
    from vanillanet_mm.deploy.quantize import node_groups
    out, report, proc = deploy_int8(
        tmp_path, data, SEG, seg_checkpoint, False, '--calib-images', '4',
        '--int8-exclude', 'heads', '--int8-sensitivity')
    assert sorted(p.name for p in out.iterdir()) == [
        'deploy_report.json', 'end2end.onnx', 'end2end_int8.onnx',
        'int8_calibration.json']
    assert_int8_report(report, out)
    groups = node_groups(str(out / 'end2end.onnx'))
    int8 = report['int8']
    assert int8['calibration_image_files'] == first_training_images(
        data, False, 4)
    assert int8['fp32_groups'] == ['heads'] and int8['method'] == 'percentile'
    assert_quantized(out / 'end2end_int8.onnx', groups, set(groups) - {
        'heads'})

    # INT8 vs fp32 logits, recomputed: plain onnxruntime, own preprocessing
    sessions = [ort.InferenceSession(str(out / f)) for f in (
        'end2end.onnx', 'end2end_int8.onnx')]
    worst = 0.
    for path in sorted((data / 'images/validation').glob('*.png')):
        ref, got = (s.run(None, {'input': preprocessed(str(path))})[0]
                    for s in sessions)
        worst = max(worst, float(np.abs(got - ref).max() /
                                 np.abs(ref).max()))
    num = report['numerics_int8_vs_fp32']
    assert num['images_shapes_differing'] == 0
    assert num['logits_relative'] == pytest.approx(worst, rel=1e-3)
    lo, hi = INT8_LOGITS_RELATIVE
    assert lo < num['logits_relative'] < hi, num

    table, fp32 = report['int8_sensitivity'], report['metrics']['onnxruntime']
    assert list(table) == list(groups)
    for group, row in table.items():
        assert row['nodes'] == len(groups[group])
        assert row['drop'] == {k: fp32[k] - v
                               for k, v in row['metrics'].items()}
    assert 'INT8 sensitivity' in proc.stdout and 'heads' in proc.stdout
    assert 'INT8 (percentile, 4 calibration images' in proc.stdout


@needs_mmdeploy
@pytest.mark.slow
def test_int8_mask_rcnn_dynamic(tmp_path, data):
    """Random demo Mask R-CNN (spread scores), dynamic shapes: backbone,
    FPN, RPN and mask head quantized, the box head's Gemm layers not."""
    from vanillanet_mm.deploy.quantize import node_groups
    ckpt = random_checkpoint(tmp_path / 'm.pth', DET, spread=True)
    out, report, _ = deploy_int8(tmp_path, data, DET, ckpt, True,
                                 '--dynamic', '--calib-method', 'minmax')
    assert_int8_report(report, out)
    groups = node_groups(str(out / 'end2end.onnx'))
    assert {'neck', 'heads'} <= set(groups)
    assert any('mask_head' in n for n in groups['heads'])
    assert_quantized(out / 'end2end_int8.onnx', groups, set(groups))
    graph = onnx.load(str(out / 'end2end_int8.onnx')).graph
    assert sum(n.op_type == 'Gemm' for n in graph.node) == 4
    assert not any(n.op_type == 'QuantizeLinear' and 'bbox_head' in n.name
                   for n in graph.node)


@needs_mmdeploy
@pytest.mark.slow
@pytest.mark.parametrize('name, det', [('resnet18_upernet_demo', False),
                                       ('resnet18_mask_rcnn_demo', True)])
def test_int8_resnet18_baselines(tmp_path, data, name, det):
    """The ResNet-18 baselines take the same path (nothing to fuse); their
    node groups are the backbone's top modules."""
    from vanillanet_mm.deploy.quantize import node_groups
    config = BASELINES / f'{name}.py'
    ckpt = random_checkpoint(tmp_path / 'm.pth', config, spread=det)
    out, report, _ = deploy_int8(tmp_path, data, config, ckpt, det,
                                 *(['--dynamic'] if det else []))
    assert_int8_report(report, out)
    groups = node_groups(str(out / 'end2end.onnx'))
    assert [g for g in groups if g.startswith('backbone')] == [
        'backbone.conv1', *(f'backbone.layer{i}' for i in range(1, 5))]
    assert_quantized(out / 'end2end_int8.onnx', groups, set(groups))
    num = report['numerics_vs_mmdeploy_pytorch']
    if det:  # random spread weights through 18 layers: 1.3e-3 px measured
        assert num['box_px'] <= 1e-2 and num['labels_differing'] == 0, num
    else:
        assert num['logits_relative'] <= 1e-4, num
