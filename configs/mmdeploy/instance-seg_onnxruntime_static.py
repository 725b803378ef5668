# mmdeploy deploy config: Mask R-CNN (instance segmentation) -> ONNX Runtime,
# static input shape (the size of the image the export runs on).
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0),
# configs/mmdet/instance-seg/instance-seg_onnxruntime_static.py with its
# _base_ files inlined (mmdeploy's wheel ships no configs). Changed: opset 16
# (not 11), so mmcv's SimpleRoIAlign (grid_sample) exports as the standard
# ONNX GridSample instead of the custom mmdeploy::grid_sampler.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=16,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['dets', 'labels', 'masks'],
    input_shape=None,
    # True needs mmdeploy's TorchScript extension, not built for torch 2.14
    optimize=False)
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,  # for YOLOv3
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
        export_postprocess_mask=False))
backend_config = dict(type='onnxruntime')
