"""tools/deployment/deploy.py: a whole fused model through mmdeploy to ONNX
Runtime.

The end-to-end tests train the demo Mask R-CNN / UperNet for a few iterations
on tiny generated data, deploy them with the real mmdeploy + onnxruntime and
check the report against the targets. They need the deploy extra (mmdeploy,
installed by scripts/setup_env.sh) and skip without it.
"""
import importlib.util
import json
import os

import pytest
import torch

from deploy_helpers import (
    CONVERT,
    DEPLOY,
    DET,
    ROOT,
    SEG,
    assert_one_error,
    demo_config,
    needs_mmdeploy,
    random_checkpoint,
    train_upernet,
)
from patch_probe import changed, snapshot
from tool_helpers import data_options, tool

ROI_ALIGN = [f'model.roi_head.{e}_roi_extractor.roi_layer.{k}' for e in (
    'bbox', 'mask') for k in ('type=RoIAlign', 'sampling_ratio=0')]


def test_missing_extra_is_one_line(tmp_path):
    # an mmdeploy that cannot be imported, first on the path
    fake = tmp_path / 'site' / 'mmdeploy'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("raise ImportError('not installed')\n")
    ckpt = random_checkpoint(tmp_path / 'm.pth', SEG)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path / 'site'), str(ROOT)]))
    proc = tool(DEPLOY, SEG, ckpt, '--work-dir', tmp_path / 'out',
                env=env)
    assert_one_error(proc, 'mmdeploy', '--no-deps', 'deploy')
    assert not (tmp_path / 'out').exists()


@needs_mmdeploy
def test_lambda_not_one_is_refused(tmp_path, data):
    ckpt = random_checkpoint(tmp_path / 'm.pth', SEG, act_learn=0.5)
    proc = tool(DEPLOY, SEG, ckpt, '--work-dir', tmp_path / 'out',
                '--cfg-options', *data_options(data, False))
    assert_one_error(proc, 'λ', '0.5')
    assert not (tmp_path / 'out').exists()


@needs_mmdeploy
def test_wrong_checkpoint_is_refused(tmp_path, data):
    # another backbone width than the config's
    wide = dict(arch=dict(dims=[32, 64, 96, 128, 256], strides=[1, 2, 2, 2]))
    ckpt = random_checkpoint(tmp_path / 'm.pth', SEG, **wide)
    opts = ['--cfg-options', *data_options(data, False)]
    proc = tool(DEPLOY, SEG, ckpt, '--work-dir', tmp_path / 'out', *opts)
    assert_one_error(proc, 'does not match', 'shape mismatches')
    proc = tool(DEPLOY, SEG, tmp_path / 'nothing.pth', '--work-dir',
                tmp_path / 'out', *opts)
    assert_one_error(proc, 'nothing.pth')
    assert not (tmp_path / 'out').exists()


@needs_mmdeploy
def test_dynamic_segmentation_is_refused(tmp_path, data):
    ckpt = random_checkpoint(tmp_path / 'm.pth', SEG)
    proc = tool(DEPLOY, SEG, ckpt, '--work-dir', tmp_path / 'out',
                '--dynamic', '--cfg-options', *data_options(data, False))
    assert_one_error(proc, '--dynamic', 'static')


@needs_mmdeploy
@pytest.mark.parametrize('path', sorted(
    (ROOT / 'configs/mmdeploy').glob('*.py')), ids=lambda p: p.stem)
def test_deploy_configs_parse(path):
    """Every shipped deploy config is one mmdeploy reads: its backend,
    task, outputs, and shapes (TensorRT: a profile; ONNX Runtime: opset 16
    for GridSample)."""
    from mmdeploy.utils import (
        get_backend,
        get_codebase,
        get_input_shape,
        get_onnx_config,
        is_dynamic_shape,
        load_config,
    )
    cfg = load_config(str(path))[0]
    backend, onnx = get_backend(cfg).value, get_onnx_config(cfg)
    assert backend in path.stem and get_codebase(cfg).value in (
        'mmdet', 'mmseg')
    assert is_dynamic_shape(cfg) == ('dynamic' in path.stem)
    assert onnx['save_file'] == 'end2end.onnx' and not onnx['optimize']
    if path.stem.startswith('instance-seg'):
        assert onnx['output_names'] == ['dets', 'labels', 'masks']
    if backend == 'tensorrt':
        assert onnx['opset_version'] == 11
        assert cfg.backend_config.model_inputs[0].input_shapes.input
    else:
        assert onnx['opset_version'] == 16
        assert get_input_shape(cfg) is None  # the data's size


def test_detections_of_equal_score_may_swap_places():
    from vanillanet_mm.deploy import compare_outputs
    dets = torch.tensor([[[0., 0, 10, 10, .9], [5, 5, 20, 20, .5],
                          [30, 30, 40, 40, .5], [1, 1, 2, 2, .1]]])
    labels = torch.tensor([[0, 1, 1, 2]])
    swapped = dets[:, [0, 2, 1, 3]]
    out = compare_outputs(['dets', 'labels'], [dets, labels],
                          dict(dets=swapped, labels=labels))
    assert out['reordered'] == 2 and out['box_px'] == 0
    # a real difference still shows: other scores are no tie
    wrong = dets.clone()
    wrong[0, 0, :2] += 3
    out = compare_outputs(['dets', 'labels'], [dets, labels],
                          dict(dets=wrong, labels=labels))
    assert out['reordered'] == 0 and out['box_px'] == 3
    out = compare_outputs(['dets', 'labels'], [dets, labels],
                          dict(dets=dets[:, :3], labels=labels[:, :3]))
    assert out == dict(shapes_differing=2.0)


@needs_mmdeploy
@pytest.mark.slow
@pytest.mark.parametrize('model', ['mask_rcnn', 'mask_rcnn_roialign',
                                   'upernet'])
def test_deploy_and_check(tmp_path, data, model):
    """Mask R-CNN (the demo's SimpleRoIAlign -> GridSample, or mmcv's
    RoIAlign -> RoiAlign): a random training-form checkpoint (spread scores,
    see random_checkpoint), dynamic shapes. UperNet: trained 4 iterations (λ
    annealed to 1), fused by convert_checkpoint.py, static shapes."""
    det = model.startswith('mask_rcnn')
    cfg = DET if det else SEG
    if det:
        ckpt = random_checkpoint(tmp_path / 'm.pth', DET, spread=True)
    else:
        fused = tmp_path / 'fused.pth'
        proc = tool(CONVERT, 'to-deploy', cfg,
                    train_upernet(tmp_path / 'train', data), fused)
        assert proc.returncode == 0, proc.stderr[-3000:]
        ckpt = fused
    out = tmp_path / 'deploy'
    proc = tool(DEPLOY, cfg, ckpt, '--work-dir', out, '--test',
                *(['--dynamic'] if det else []),
                '--cfg-options', *data_options(data, det),
                *(ROI_ALIGN if model.endswith('roialign') else []))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / 'deploy_report.json').read_text())
    assert (out / 'end2end.onnx').exists()
    # only standard ONNX operators (GridSample, NonMaxSuppression, ...)
    assert list(report['onnx_ops']) == ['ai.onnx'], report['onnx_ops']
    roi_op = dict(mask_rcnn='GridSample', mask_rcnn_roialign='RoiAlign')
    assert roi_op.get(model, 'Conv') in report['onnx_ops']['ai.onnx']
    metrics = report['metrics']
    num = report['numerics_vs_mmdeploy_pytorch']
    assert num['images'] == 4
    if det:
        for k in ('coco/bbox_mAP', 'coco/segm_mAP'):
            assert abs(metrics['difference'][k]) <= 0.01, metrics
        assert sorted(num['dynamic_sizes']) == ['160x224', '192x192',
                                                '256x320']
        for row in [num, *num['dynamic_sizes'].values()]:
            assert 'shapes_differing' not in row, row
            assert row['num_dets'] > 0, row
            assert row['box_px'] <= 1e-3 and row['score'] <= 1e-5, row
            assert row['labels_differing'] == 0 and row['mask'] <= 1e-4, row
    else:
        assert abs(metrics['difference']['mIoU']) <= 0.05, metrics
        assert num['logits_relative'] <= 1e-4, num
    for name in ('onnxruntime', 'pytorch_fused'):
        lat = report['latency_ms_per_image'][name]
        assert lat['images'] == 4 and lat['median_ms'] > 0


@needs_mmdeploy
def test_deploying_leaves_no_patch(tmp_path, data):
    """The export's fixes (vanillanet_mm.deploy.runtime) hold only around
    it: after a deploy (the demo Mask R-CNN, dynamic: every fix is used)
    torch, mmcv and mmdeploy are as they were, also after an exception."""
    from mmdeploy.codebase import import_codebase
    from mmdeploy.utils import Codebase

    from vanillanet_mm.deploy.pipeline import deploy
    import_codebase(Codebase.MMDET)  # mmdeploy's own rewriters come first
    ckpt = random_checkpoint(tmp_path / 'm.pth', DET)
    cfg = demo_config(DET, data, True)
    before = snapshot()
    deploy(cfg, str(ckpt), str(tmp_path / 'out'), dynamic=True,
           log=lambda *_: None)
    assert (tmp_path / 'out/end2end.onnx').is_file()
    assert changed(before, snapshot()) == []

    from vanillanet_mm.deploy.runtime import deploy_patches
    with pytest.raises(ZeroDivisionError):
        with deploy_patches():
            assert changed(before, snapshot())  # in place inside
            1 / 0
    assert changed(before, snapshot()) == []


TRT_DET = ROOT / ('configs/mmdeploy/'
                  'instance-seg_tensorrt_dynamic-320x320-1344x1344.py')


@needs_mmdeploy
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('tensorrt') is not None,
                    reason='TensorRT is installed: this checks its absence')
def test_tensorrt_config_exports_then_stops_without_tensorrt(tmp_path, data):
    ckpt = random_checkpoint(tmp_path / 'm.pth', DET)
    opts = ['--cfg-options', *data_options(data, True)]
    # the demo's SimpleRoIAlign has no TensorRT plugin in mmdeploy
    proc = tool(DEPLOY, DET, ckpt, '--work-dir', tmp_path / 'simple',
                '--deploy-cfg', TRT_DET, *opts)
    assert_one_error(proc, 'SimpleRoIAlign', 'RoIAlign')
    # mmcv's RoIAlign: the ONNX for TensorRT is written, then one line
    out = tmp_path / 'trt'
    proc = tool(DEPLOY, DET, ckpt, '--work-dir', out, '--deploy-cfg',
                TRT_DET, *opts, *ROI_ALIGN)
    assert_one_error(proc, 'end2end.onnx is written', 'TensorRT', 'GPU')
    from vanillanet_mm.deploy import onnx_ops
    ops = onnx_ops(str(out / 'end2end.onnx'))
    assert {'TRTBatchedNMS', 'MMCVMultiLevelRoiAlign'} <= set(ops['mmdeploy'])
