# Mask R-CNN with a small VanillaNet, trained from scratch with deep training
# (λ 0 -> 1 by epoch 8 of 13) on the embedded demo data: the recipe the λ
# ablation ran on (tools/analysis_tools/deep_training_ablation.py,
# docs/deep_training_ablation.md), kept as it was so its results stay valid.
# The demo (vanillanet_demo.py) builds on it.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['vanillanet_mm'], allow_failed_imports=False)

data_root = 'data/demo/'
classes = ('circle', 'triangle', 'rectangle', 'star')
metainfo = dict(classes=classes)
img_size = 192
max_epochs = 13
lambda_epochs = 8  # λ reaches 1 here; the rest trains the final form

# widths: stem, then each stage; strides 1,2,2,2 -> outputs at /4 ... /32.
# (A deeper 7-stage VN13-like pattern, act_num 3, 10 epochs trained slower:
# loss 1.13 vs 0.90 after the same wall time.)
backbone_arch = dict(dims=[32, 64, 96, 128, 192], strides=[1, 2, 2, 2])
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(_delete_=True, type='VanillaNet', arch=backbone_arch,
                  act_num=2, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[64, 96, 128, 192], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[4])),
    # CPU speed (2 cores, tools/analysis_tools/profile_train_step.py,
    # trained weights): a step took 1.00 s; SimpleRoIAlign (grid_sample;
    # mmcv's RoIAlign backward is a serial loop on CPU) 0.74 s, bilinear mask
    # upsampling instead of the 2x2 deconv 0.67 s, nms_pre 1000 -> 400 0.60 s.
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64, roi_layer=dict(
            _delete_=True, type='SimpleRoIAlign', output_size=7)),
        # GIoU on decoded boxes: bbox mAP 0.684 -> 0.706 (13 epochs)
        bbox_head=dict(in_channels=64, fc_out_channels=256,
                       num_classes=len(classes), reg_decoded_bbox=True,
                       loss_bbox=dict(_delete_=True, type='GIoULoss',
                                      loss_weight=10.0)),
        mask_roi_extractor=dict(out_channels=64, roi_layer=dict(
            _delete_=True, type='SimpleRoIAlign', output_size=14)),
        mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=64,
                       upsample_cfg=dict(type='bilinear', scale_factor=2),
                       num_classes=len(classes))),
    train_cfg=dict(rpn_proposal=dict(nms_pre=400, max_per_img=500),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    # no-op at the native size, but records scale_factor for mask pasting
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(
    # workers restarted (and re-seeded) each epoch: a resumed run sees the
    # same augmentation as the uninterrupted one (RNGStateHook)
    batch_size=4, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_training.json',
                 data_prefix=dict(img='images/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_validation.json',
                 data_prefix=dict(img='images/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     'annotations/instances_validation.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         eta_min_ratio=0.02, convert_to_iter_based=True),
]
custom_hooks = [dict(type='DeepTrainingHook', decay_epochs=lambda_epochs),
                dict(type='RNGStateHook')]  # exact --resume
default_hooks = dict(
    logger=dict(interval=25),
    # crash-safe (temp file + rename), also under mmdet's own tools/train.py
    checkpoint=dict(type='AtomicCheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1))
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=4)
