# The official VanillaNet-13 COCO recipe minus the detector: backbone and
# optimizer, training data, schedule, and the deep-training hooks (λ from
# act_learn_start, annealed over lambda_epochs). Goes after mmdet's model,
# dataset and runtime bases.
_base_ = [
    './models/vanillanet13.py',
    './datasets/coco_mstrain_480_1024.py',
    './schedules/vanillanet_coco_1x.py',
]

optim_wrapper = _base_.vanillanet13_optim_wrapper  # no grad clipping
custom_hooks = [dict(type='DeepTrainingHook',
                     decay_epochs=_base_.lambda_epochs,
                     start=_base_.act_learn_start),
                dict(type='RNGStateHook')]  # exact --resume
