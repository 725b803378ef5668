# Mask R-CNN + FPN, VanillaNet-13 (act_num 4), COCO, 1x schedule: the official
# VanillaNet detection recipe translated to mmdet 3.x.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['vanillanet_mm'], allow_failed_imports=False)

# --- the one path to set ----------------------------------------------------
# Official ImageNet VanillaNet-13 checkpoint (or the output of
# `tools/convert_checkpoint.py from-official`); None trains from scratch.
pretrained = 'checkpoints/vanillanet_13.pth'
# --- λ (deep training) -------------------------------------------------------
# ImageNet checkpoints finish deep training at λ = 1, so fine-tuning keeps
# λ = 1 (as the official detection code, which has no λ at all): the hook
# then only pins and logs it. From scratch (pretrained=None) or from a λ < 1
# checkpoint, set act_learn_start to that λ: it is annealed to 1 over the
# first lambda_epochs epochs. Either way test with --deploy after training.
act_learn_start = 1.0 if pretrained else 0.0
lambda_epochs = 8
max_epochs = 12

data_root = 'data/coco/'
norm_cfg = dict(type='SyncBN', eps=1e-6, requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True, type='VanillaNet', arch='vanillanet_13', act_num=4,
        out_indices=(0, 1, 8, 10), norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)
        if pretrained else None),
    neck=dict(in_channels=[512, 1024, 2048, 4096]))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # multi-scale: short side 480..1024, long side <= 1333
    dict(type='RandomResize', scale=[(1333, 480), (1333, 1024)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root,
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    constructor='VanillaNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=6, decay_rate=0.6,
                       decay_type='layer_wise'),
    optimizer=dict(type='AdamW', lr=1.3e-4, betas=(0.9, 0.999),
                   weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    # as the official recipe; the epoch-12 step only acts if training is
    # extended past max_epochs
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[10, 12], gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [dict(type='DeepTrainingHook', decay_epochs=lambda_epochs,
                     start=act_learn_start),
                dict(type='RNGStateHook')]  # exact --resume
auto_scale_lr = dict(enable=False, base_batch_size=16)  # 8 GPUs x 2 images
