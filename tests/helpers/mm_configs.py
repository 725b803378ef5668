"""Tiny Mask R-CNN / UperNet configs, as a user project outside this repo
would write them."""
import textwrap

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



def write_config(tmp_path, text, name='my_config.py'):
    path = tmp_path / 'user_project' / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)
