# mmdeploy deploy config: Mask R-CNN (instance segmentation) -> ONNX Runtime,
# static input shape (the size of the image the export runs on).
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0),
# configs/mmdet/instance-seg/instance-seg_onnxruntime_static.py and its
# _base_ files (mmdet/_base_/base_static.py, base_instance-seg_static.py).
_base_ = ['./_base_/onnx_config.py']
onnx_config = dict(output_names=['dets', 'labels', 'masks'])
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
