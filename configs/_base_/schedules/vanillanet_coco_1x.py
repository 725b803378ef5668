# The official VanillaNet COCO schedule (both detectors): AdamW's 500-
# iteration linear warmup, 12 epochs, lr x0.1 at epoch 10 (RetinaNet
# overrides its second step), validation every epoch; λ's length. Replaces
# mmdet's schedule_1x in a config's _base_ list (the optimizer comes with
# the backbone: configs/_base_/models/).
max_epochs = 12
lambda_epochs = 8  # λ 0 -> 1 here when act_learn_start < 1 (from scratch)

param_scheduler = [
    # mmcv warmup='linear', warmup_iters=500, warmup_ratio=0.001
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    # mmcv step=[10, 12]: the epoch-12 step never acts in 12 epochs
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[10, 12], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The lr is for 8 GPUs x 4 images: `tools/train.py --auto-scale-lr` scales
# it linearly to another total batch.
auto_scale_lr = dict(enable=False, base_batch_size=32)
