# Mask R-CNN + FPN, VanillaNet-13 (act_num 4), COCO: the official recipe
# (huawei-noah/VanillaNet mask_rcnn_vanillanet_13_mstrain_480-1024_adamw.py,
# mmdet 2.x) in mmdet 3.x; docs/official_recipes.md compares it row by row.
# Published: box AP 44.3, mask AP 40.1. Assumes 8 GPUs x 4 images.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/vanillanet13_coco.py',
]

model = dict(
    backbone=dict(_base_.vanillanet13, _delete_=True),
    neck=dict(in_channels=[512, 1024, 2048, 4096]))  # 5 outputs P2-P6

# mmdet's COCO train pipeline with the official multi-scale resize
train_pipeline = [_base_.multiscale_resize if t.type == 'Resize' else t
                  for t in _base_.train_pipeline]
train_dataloader = dict(batch_size=_base_.train_batch_size_per_gpu,
                        num_workers=_base_.train_num_workers,
                        dataset=dict(pipeline=train_pipeline))
# crash-safe checkpoints (temp file + rename), also under mmdet's / mmseg's
# own tools/train.py
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
