# mmdeploy deploy config: Mask R-CNN (instance segmentation) -> TensorRT,
# dynamic shapes 320x320 ... 1344x1344 (COCO scale, e.g. the VN13 configs).
# For GPU users; NOT run here (no GPU, no TensorRT): see README "Deploy".
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0),
# configs/mmdet/instance-seg/instance-seg_tensorrt_dynamic-320x320-1344x1344.py
# with its _base_ files inlined (mmdeploy's wheel ships no configs). Opset 11
# as there: NMS and RoIAlign become mmdeploy's TensorRT plugins.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['dets', 'labels', 'masks'],
    input_shape=None,
    # True needs mmdeploy's TorchScript extension, not built for torch 2.14
    optimize=False,
    dynamic_axes={
        'input': {0: 'batch', 2: 'height', 3: 'width'},
        'dets': {0: 'batch', 1: 'num_dets'},
        'labels': {0: 'batch', 1: 'num_dets'},
        'masks': {0: 'batch', 1: 'num_dets', 2: 'height', 3: 'width'},
    })
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
backend_config = dict(
    type='tensorrt',
    common_config=dict(fp16_mode=False, max_workspace_size=1 << 30),
    model_inputs=[
        dict(
            input_shapes=dict(
                input=dict(
                    min_shape=[1, 3, 320, 320],
                    opt_shape=[1, 3, 800, 1344],
                    max_shape=[1, 3, 1344, 1344])))
    ])
