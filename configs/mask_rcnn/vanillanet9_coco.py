# Lighter Mask R-CNN: VanillaNet-9 (7 stages) trades AP for speed. The
# official VN9 ImageNet checkpoint is an act_num-3 model (only VN13 has an
# act_num-4 detection checkpoint), so act_num is 3 here. Recipe as VN13.
_base_ = './vanillanet13_coco.py'

pretrained = 'checkpoints/vanillanet_9.pth'
act_learn_start = 1.0 if pretrained else 0.0
model = dict(backbone=dict(
    arch='vanillanet_9', act_num=3, out_indices=(0, 1, 4, 6),  # /4 ... /32
    init_cfg=dict(type='Pretrained', checkpoint=pretrained)
    if pretrained else None))
# 7 stages -> layer_wise groups stem 0, stages 1..4
optim_wrapper = dict(paramwise_cfg=dict(num_layers=4))
custom_hooks = [dict(_base_.custom_hooks[0], start=act_learn_start),
                _base_.custom_hooks[1]]
