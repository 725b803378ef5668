# ResNet-50 (mmdet's, as in its Mask R-CNN R-50 configs): the backbone
# `tools/analysis_tools/model_fps.py` times in place of VanillaNet, with
# the channels of its four outputs (/4 ... /32) for the neck or heads.
backbone = dict(type='mmdet.ResNet', depth=50, num_stages=4,
                out_indices=(0, 1, 2, 3), frozen_stages=1,
                norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True,
                style='pytorch')
out_channels = [256, 512, 1024, 2048]
