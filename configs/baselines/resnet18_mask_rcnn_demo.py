# Baseline for the demo: the same Mask R-CNN, data and schedule as
# configs/mask_rcnn/vanillanet_demo.py, with a ResNet-18 (residual) backbone
# trained from scratch — to compare learning curves with VanillaNet's.
_base_ = '../mask_rcnn/vanillanet_demo.py'

model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=18, num_stages=4,
                  out_indices=(0, 1, 2, 3), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, style='pytorch'),
    neck=dict(in_channels=[64, 128, 256, 512]))
custom_hooks = []  # no λ to anneal
