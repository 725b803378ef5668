"""mmdet and mmseg build VanillaNet from a config outside this repo."""
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

BACKBONE = ("dict(_delete_=True, type='VanillaNet', act_num=2, "
            "arch=dict(dims=[8, 8, 16, 32, 32, 64], strides=[1, 2, 2, 1, 2]),"
            " out_indices=(0, 1, 3, 4))")

DET_CFG = f"""
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['vanillanet_mm'], allow_failed_imports=False)
model = dict(backbone={BACKBONE},
             neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
             rpn_head=dict(feat_channels=16, in_channels=16),
             roi_head=dict(
                 bbox_roi_extractor=dict(out_channels=16),
                 bbox_head=dict(in_channels=16, fc_out_channels=32,
                                num_classes=3),
                 mask_roi_extractor=dict(out_channels=16),
                 mask_head=dict(in_channels=16, conv_out_channels=16,
                                num_classes=3)))
"""

SEG_CFG = f"""
_base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'
custom_imports = dict(imports=['vanillanet_mm'], allow_failed_imports=False)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(data_preprocessor=dict(size=(64, 64)), pretrained=None,
             backbone={BACKBONE},
             decode_head=dict(in_channels=[8, 16, 32, 64], channels=16,
                              num_classes=5, norm_cfg=norm_cfg),
             auxiliary_head=dict(in_channels=32, in_index=2, channels=8,
                                 num_classes=5, norm_cfg=norm_cfg))
"""


def _load(tmp_path, text):
    path = tmp_path / 'user_project' / 'my_config.py'
    path.parent.mkdir()
    path.write_text(textwrap.dedent(text))
    return Config.fromfile(str(path))


def test_mmdet_mask_rcnn_builds_and_trains(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    cfg = _load(tmp_path, DET_CFG)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'VanillaNet'
    model.init_weights()
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
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    cfg = _load(tmp_path, SEG_CFG)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'VanillaNet'
    model.init_weights()
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
