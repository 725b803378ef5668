# The demo Mask R-CNN (make demo): a small VanillaNet trained from scratch
# with deep training (λ 0 -> 1) on the embedded demo data, one CPU thread next
# to the UperNet demo. It is the ablation's recipe (vanillanet_demo_13e.py)
# with a wider backbone, 64 RoIs per image instead of 128 (half the RoI-head
# cost a step), 18 epochs and λ = 1 from epoch 3 (on its base recipe the
# ablation found the pair, not the anneal, to help). Seed 0, one thread next to
# another run:
# 13e 0.673 bbox mAP; 64 RoIs, 16 epochs, λ = 1 at 3: 0.697; the same wider:
# 0.726 (README, "Demo", has the final figures).
_base_ = './vanillanet_demo_13e.py'

max_epochs = 18
lambda_epochs = 3

backbone_arch = dict(dims=[48, 96, 160, 256, 384], strides=[1, 2, 2, 2])
model = dict(
    backbone=dict(arch=backbone_arch),
    neck=dict(in_channels=backbone_arch['dims'][1:]),
    train_cfg=dict(rcnn=dict(sampler=dict(num=64))))

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [_base_.param_scheduler[0],
                   dict(_base_.param_scheduler[1], end=max_epochs)]
custom_hooks = [dict(type='DeepTrainingHook', decay_epochs=lambda_epochs),
                dict(type='RNGStateHook')]  # exact --resume
default_hooks = dict(checkpoint=dict(interval=max_epochs))
