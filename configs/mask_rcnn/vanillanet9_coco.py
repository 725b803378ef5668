# Lighter Mask R-CNN: VanillaNet-9 (7 stages) trades AP for speed.
_base_ = './vanillanet13_coco.py'

pretrained = 'checkpoints/vanillanet_9.pth'
act_learn_start = 1.0 if pretrained else 0.0
model = dict(backbone=dict(
    arch='vanillanet_9', out_indices=(0, 1, 4, 6),  # /4 /8 /16 /32
    init_cfg=dict(type='Pretrained', checkpoint=pretrained)
    if pretrained else None))
# 7 stages -> layer_wise groups stem 0, stages 1..4
optim_wrapper = dict(paramwise_cfg=dict(num_layers=4))
custom_hooks = [dict(type='DeepTrainingHook', decay_epochs=8,
                     start=act_learn_start),
                dict(type='RNGStateHook')]  # exact --resume
