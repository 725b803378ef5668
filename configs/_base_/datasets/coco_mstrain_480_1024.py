# The official VanillaNet COCO training data recipe (both detectors), as
# variables beside mmdet's coco_instance / coco_detection bases: 8 GPUs x 4
# images, the short side drawn from 18 values 480..1024 (long side <= 1333).
# A config swaps `multiscale_resize` for the Resize of mmdet's pipeline.
train_batch_size_per_gpu = 4  # official samples_per_gpu=4 on 8 GPUs
train_num_workers = 4
# mmdet 2.x Resize(img_scale=[...], multiscale_mode='value'): one of these
# per image, uniformly -> mmdet 3.x RandomChoiceResize(scales=...).
train_scales = [(1333, 480 + 32 * i) for i in range(18)]
multiscale_resize = dict(type='RandomChoiceResize', scales=train_scales,
                         keep_ratio=True)
