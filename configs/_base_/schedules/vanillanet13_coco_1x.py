# The official VanillaNet COCO schedule and data recipe (both detectors):
# 8 GPUs x 4 images, AdamW + layer decay, 500-iteration linear warmup, 12
# epochs, lr x0.1 at epoch 10 (RetinaNet overrides lr and its second step),
# short side drawn from 18 values 480..1024 (long side <= 1333). Replaces
# mmdet's schedule_1x in a config's _base_ list.
_base_ = '../models/vanillanet13.py'

max_epochs = 12
lambda_epochs = 8  # λ 0 -> 1 here when act_learn_start < 1 (from scratch)
# mmdet 2.x Resize(img_scale=[...], multiscale_mode='value'): one of these
# per image, uniformly -> mmdet 3.x RandomChoiceResize(scales=...).
train_scales = [(1333, 480 + 32 * i) for i in range(18)]
train_batch_size_per_gpu = 4  # official samples_per_gpu=4 on 8 GPUs
train_num_workers = 4

optim_wrapper = _base_.vanillanet13_optim_wrapper  # no grad clipping
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
# The lr above is for 8 GPUs x 4 images: `tools/train.py --auto-scale-lr`
# scales it linearly to another total batch.
auto_scale_lr = dict(enable=False, base_batch_size=32)
custom_hooks = [dict(type='DeepTrainingHook', decay_epochs=lambda_epochs,
                     start=_base_.act_learn_start),
                dict(type='RNGStateHook')]  # exact --resume
