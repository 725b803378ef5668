# UperNet, VanillaNet-13 (act_num 4), ADE20K 512x512, 160k iterations,
# AdamW + layer decay, SyncBN, auxiliary FCN head on the /16 map.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['vanillanet_mm'], allow_failed_imports=False)

# Official ImageNet checkpoint; None trains from scratch. λ: an ImageNet
# checkpoint is at λ = 1 and stays there; from scratch (or λ < 1) it is
# annealed from act_learn_start to 1 over lambda_iters.
pretrained = 'checkpoints/vanillanet_13.pth'
act_learn_start = 1.0 if pretrained else 0.0
lambda_iters = 80000
data_root = 'data/ade/ADEChallengeData2016'

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True, type='VanillaNet', arch='vanillanet_13', act_num=4,
        out_indices=(0, 1, 8, 10),
        norm_cfg=dict(type='SyncBN', eps=1e-6, requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)
        if pretrained else None),
    decode_head=dict(in_channels=[512, 1024, 2048, 4096], num_classes=150,
                     norm_cfg=norm_cfg),
    # auxiliary FCN head on the /16 map (stage 8: 2048 channels)
    auxiliary_head=dict(in_channels=2048, in_index=2, num_classes=150,
                        norm_cfg=norm_cfg))

train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    constructor='VanillaNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=6, decay_rate=0.6),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', power=1.0, begin=1500, end=160000, eta_min=0.0,
         by_epoch=False),
]
custom_hooks = [dict(type='DeepTrainingHook', decay_iters=lambda_iters,
                     start=act_learn_start),
                dict(type='RNGStateHook')]  # exact --resume
