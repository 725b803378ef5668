# RetinaNet + FPN, VanillaNet-13 (act_num 4), COCO 1x (the official repo has
# a RetinaNet VN13 config too). λ as in vanillanet13_coco.py.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['vanillanet_mm'], allow_failed_imports=False)

pretrained = 'checkpoints/vanillanet_13.pth'
act_learn_start = 1.0 if pretrained else 0.0
lambda_epochs = 8
max_epochs = 12
data_root = 'data/coco/'

model = dict(
    backbone=dict(
        _delete_=True, type='VanillaNet', arch='vanillanet_13', act_num=4,
        out_indices=(0, 1, 8, 10),
        norm_cfg=dict(type='SyncBN', eps=1e-6, requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)
        if pretrained else None),
    # FPN starts at /8 (start_level=1) as RetinaNet-R50
    neck=dict(in_channels=[512, 1024, 2048, 4096]))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    constructor='VanillaNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=6, decay_rate=0.6),
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[8, 11], gamma=0.1),
]
custom_hooks = [dict(type='DeepTrainingHook', decay_epochs=lambda_epochs,
                     start=act_learn_start),
                dict(type='RNGStateHook')]  # exact --resume
auto_scale_lr = dict(enable=False, base_batch_size=16)
