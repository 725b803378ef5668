"""tools/analysis_tools/int8_backbone.py as a user runs it, on a small
VanillaNet at a small shape; its numbers recomputed from the files it
writes."""
import json

import cv2
import numpy as np
import onnx
import pytest

from tool_helpers import tool

ort = pytest.importorskip('onnxruntime')

TOOL = 'analysis_tools/int8_backbone.py'
SMALL = ('--arch', 'vanillanet_5', '--act-num', '1', '--threads', '1')
FORMS = {'pytorch_fused', 'ort_fp32', 'ort_int8'}
COLOUR = (200, 100, 50)  # the held-out image, RGB
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@pytest.fixture(scope='module')
def img_run(tmp_path_factory):
    """Calibrated on two noise images of a folder; the third (by name), one
    colour, is the timed input. (process, report, folder of its files)."""
    tmp = tmp_path_factory.mktemp('int8')
    imgs = tmp / 'imgs'
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for name in ('a.png', 'b.jpg'):
        cv2.imwrite(str(imgs / name),
                    rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    cv2.imwrite(str(imgs / 'c.png'),
                np.full((40, 60, 3), COLOUR[::-1], np.uint8))  # BGR
    out, models = tmp / 'r.json', tmp / 'models'
    proc = tool(TOOL, *SMALL, '--shape', 64, 96, '--calib-images', 2,
                '--img-dir', imgs, '--repeats', 2, '--save-dir', models,
                '--out', out, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads(out.read_text()), models


def test_report_times_three_forms(img_run):
    proc, r, _ = img_run
    assert set(r['forms']) == FORMS
    for t in r['forms'].values():
        assert len(t['times_ms']) == 2 and all(v > 0 for v in t['times_ms'])
        assert 0 < t['median_ms'] <= t['p90_ms']
    med = {k: v['median_ms'] for k, v in r['forms'].items()}
    assert r['speedup_int8_vs_ort_fp32'] == pytest.approx(
        med['ort_fp32'] / med['ort_int8'])
    assert r['speedup_int8_vs_pytorch'] == pytest.approx(
        med['pytorch_fused'] / med['ort_int8'])
    assert r['calibration']['calibration_images'] == 2
    assert 'random' in r['weights'] and 'weights: random' in proc.stdout
    assert 'images of' in r['calibration']['inputs']


def test_int8_model_is_qdq_per_channel(img_run):
    _, _, models = img_run
    fp32 = onnx.load(str(models / 'fp32.onnx'))
    int8 = onnx.load(str(models / 'int8.onnx'))
    assert not {'QuantizeLinear', 'DequantizeLinear'} & {
        n.op_type for n in fp32.graph.node}
    producer = {o: n for n in int8.graph.node for o in n.output}
    inits = {i.name: i for i in int8.graph.initializer}
    convs = [n for n in int8.graph.node if n.op_type == 'Conv']
    assert len(convs) == 8  # stem conv + act, 3 stages x (conv, act)
    for conv in convs:
        x, w = (producer[i] for i in conv.input[:2])
        assert x.op_type == w.op_type == 'DequantizeLinear'
        assert producer[x.input[0]].op_type == 'QuantizeLinear'
        weight, scale = inits[w.input[0]], inits[w.input[1]]
        assert weight.data_type == onnx.TensorProto.INT8
        assert list(scale.dims) == list(weight.dims[:1])  # per out channel


def test_reported_error_is_the_files(img_run):
    """The INT8 vs fp32 error, recomputed from the written models on the
    written input with onnxruntime."""
    _, r, models = img_run
    x = np.load(models / 'input.npy')
    expected = [(c - m) / s for c, m, s in zip(COLOUR, MEAN, STD)]
    assert x.shape == (1, 3, 64, 96)
    np.testing.assert_allclose(x[0, :, 0, 0], expected, rtol=1e-6)
    assert np.ptp(x, axis=(2, 3)).max() == 0  # resized, still one colour
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    outs = {f: ort.InferenceSession(str(models / f'{f}.onnx'), opts,
                                    providers=['CPUExecutionProvider']
                                    ).run(None, {'input': x})
            for f in ('fp32', 'int8')}
    errs = r['int8_vs_ort_fp32_max_rel_err']
    assert list(errs) == ['out0', 'out1', 'out2']
    for name, a, b in zip(errs, outs['fp32'], outs['int8']):
        a, b = a.astype(np.float64), b.astype(np.float64)
        err = np.abs(b - a).max() / np.abs(a).max()
        assert errs[name] == pytest.approx(err, rel=1e-4)
        assert 0 < err < 0.05


def test_random_inputs_said(tmp_path):
    out = tmp_path / 'r.json'
    proc = tool(TOOL, *SMALL, '--shape', 32, 32, '--calib-images', 1,
                '--repeats', 1, '--warmup', 0, '--out', out, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'random standard-normal inputs' in proc.stdout
    r = json.loads(out.read_text())
    assert r['calibration']['calibration_images'] == 1
    assert set(r['forms']) == FORMS


@pytest.mark.parametrize('args, match', [
    (('--shape', 16, 200), '--shape 16 200 is smaller than the total '
     'stride 32'),
    (('--calib-images', 0), '--calib-images must be >= 1, got 0'),
    (('--img-dir', 'no/such/dir'), '--img-dir no/such/dir is not a folder'),
])
def test_bad_input_is_one_line(tmp_path, args, match):
    out = tmp_path / 'r.json'
    proc = tool(TOOL, *SMALL, *args, '--out', out, timeout=600)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('int8_backbone: error: ')
    assert match in lines[0]
    assert not out.exists()
