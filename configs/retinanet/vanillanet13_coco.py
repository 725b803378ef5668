# RetinaNet + FPN, VanillaNet-13 (act_num 4), COCO: the official recipe
# (huawei-noah/VanillaNet retinanet_vanillanet_13_mstrain_480-1024_adamw.py,
# mmdet 2.x) in mmdet 3.x; docs/official_recipes.md compares it row by row.
# Published: AP 43.0. Assumes 8 GPUs x 4 images.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/vanillanet13_coco.py',
]

model = dict(
    # official: stages 1, 8, 10 (/8, /16, /32) feed the FPN from its first
    # input (start_level=0), plus two extra convs: P3-P7
    backbone=dict(_base_.vanillanet13, _delete_=True, out_indices=(1, 8, 10)),
    neck=dict(in_channels=[1024, 2048, 4096], start_level=0, num_outs=5))

# mmdet's COCO train pipeline with the official multi-scale resize
train_pipeline = [_base_.multiscale_resize if t.type == 'Resize' else t
                  for t in _base_.train_pipeline]
train_dataloader = dict(batch_size=_base_.train_batch_size_per_gpu,
                        num_workers=_base_.train_num_workers,
                        dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(optimizer=dict(lr=8e-5))
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], milestones=[10, 11]),
]
# crash-safe checkpoints (temp file + rename), also under mmdet's / mmseg's
# own tools/train.py
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
