"""mmdet and mmseg build VanillaNet from a config outside this repo."""
import importlib

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mm_configs import DET_CFG, SEG_CFG, write_config


def _build(tmp_path, text, scope):
    """The config's model, through the codebase's own registry."""
    cfg = Config.fromfile(write_config(tmp_path, text))
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(cfg.model)
    assert type(model.backbone).__name__ == 'VanillaNet'
    model.init_weights()
    return model


def test_mmdet_mask_rcnn_builds_and_trains(tmp_path):
    from mmdet.testing import demo_mm_inputs
    model = _build(tmp_path, DET_CFG, 'mmdet')
    packed = demo_mm_inputs(2, [[3, 96, 128], [3, 96, 128]], num_items=[2, 3],
                            num_classes=3, with_mask=True)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_mask'} <= set(losses)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stem1[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(packed, False),
                      mode='predict')
    assert len(preds) == 2 and hasattr(preds[0].pred_instances, 'masks')


def test_mmseg_upernet_builds_and_trains(tmp_path):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    model = _build(tmp_path, SEG_CFG, 'mmseg')
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                        pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 64, 64)))
        samples.append(s)
    data = model.data_preprocessor(
        dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
                     for _ in range(2)], data_samples=samples), True)
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total = losses['decode.loss_ce'] + losses['aux.loss_ce']
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stages[0].act.weight.grad.abs().sum() > 0
