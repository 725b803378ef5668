# UperNet, VanillaNet-13 (act_num 4), ADE20K 512x512, 160k iterations,
# AdamW + the VN13 layer decay, SyncBN, auxiliary FCN head on the /16 map.
# (The official VanillaNet work has no segmentation recipe: the schedule is
# mmseg's UperNet one with AdamW at lr 1e-4.)
_base_ = [
    'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
    '../_base_/models/vanillanet13.py',
]
lambda_iters = 80000  # λ 0 -> 1 here when act_learn_start < 1

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    backbone=dict(_base_.vanillanet13, _delete_=True),
    decode_head=dict(in_channels=[512, 1024, 2048, 4096], num_classes=150,
                     norm_cfg=norm_cfg),
    # auxiliary FCN head on the /16 map (stage 8: 2048 channels)
    auxiliary_head=dict(in_channels=2048, in_index=2, num_classes=150,
                        norm_cfg=norm_cfg))

optim_wrapper = dict(
    _base_.vanillanet13_optim_wrapper, _delete_=True,
    optimizer=dict(_base_.vanillanet13_optim_wrapper.optimizer, lr=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', power=1.0, begin=1500, end=160000, eta_min=0.0,
         by_epoch=False),
]
custom_hooks = [dict(type='DeepTrainingHook', decay_iters=lambda_iters,
                     start=_base_.act_learn_start),
                dict(type='RNGStateHook')]  # exact --resume
# crash-safe checkpoints (temp file + rename), also under mmdet's / mmseg's
# own tools/train.py
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
