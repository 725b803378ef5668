# UperNet with a small VanillaNet, trained from scratch with deep training
# (λ 0 -> 1 by iteration 1000 of 1500) on the embedded demo data: the recipe
# the λ ablation ran on (tools/analysis_tools/deep_training_ablation.py,
# docs/deep_training_ablation.md), kept as it was so its results stay valid.
# The demo (vanillanet_demo.py) builds on it.
# Labels: 0 = background, 1..4 = shapes, so reduce_zero_label=False.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'
custom_imports = dict(imports=['vanillanet_mm'], allow_failed_imports=False)

data_root = 'data/demo/'
classes = ('background', 'circle', 'triangle', 'rectangle', 'star')
palette = [[0, 0, 0], [220, 20, 60], [0, 128, 0], [0, 0, 230],
           [250, 170, 30]]
metainfo = dict(classes=classes, palette=palette)
img_size = (192, 192)
# Without OHEM: 600 iterations 31.1 mIoU (shapes vs background only), 1200
# 68.1; with OHEM: 1200 73.7, 1500 83.3 (triangles were taken for rectangles)
max_iters = 1500
lambda_iters = 1000  # λ reaches 1 here; the rest trains the final form

norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs a GPU group
backbone_arch = dict(dims=[32, 64, 96, 128, 192], strides=[1, 2, 2, 2])
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=img_size),
    backbone=dict(_delete_=True, type='VanillaNet', arch=backbone_arch,
                  act_num=2, out_indices=(0, 1, 2, 3)),
    # shapes cover ~13 % of the pixels: train on the hard ones (OHEM)
    decode_head=dict(in_channels=[64, 96, 128, 192], channels=64,
                     num_classes=len(classes), norm_cfg=norm_cfg,
                     sampler=dict(type='OHEMPixelSampler', thresh=0.7,
                                  min_kept=20000)),
    auxiliary_head=dict(in_channels=128, in_index=2, channels=32,
                        num_classes=len(classes), norm_cfg=norm_cfg))

dataset_type = 'BaseSegDataset'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo,
                img_suffix='.png', seg_map_suffix='.png',
                reduce_zero_label=False)
train_dataloader = dict(
    batch_size=4, num_workers=1,
    dataset=dict(**_dataset, pipeline=train_pipeline, data_prefix=dict(
        img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=1, num_workers=1,
    dataset=dict(**_dataset, pipeline=test_pipeline, data_prefix=dict(
        img_path='images/validation',
        seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
         eta_min_ratio=0.02),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
custom_hooks = [dict(type='DeepTrainingHook', decay_iters=lambda_iters),
                dict(type='RNGStateHook')]  # exact --resume
default_hooks = dict(
    logger=dict(interval=25, log_metric_by_epoch=False),
    # crash-safe (temp file + rename), also under mmseg's own tools/train.py
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0)
