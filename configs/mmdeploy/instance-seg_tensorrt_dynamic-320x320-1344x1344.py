# mmdeploy deploy config: Mask R-CNN (instance segmentation) -> TensorRT,
# dynamic shapes 320x320 ... 1344x1344 (COCO scale, e.g. the VN13 configs,
# which use mmcv's RoIAlign: mmdeploy has no TensorRT path for the demo's
# SimpleRoIAlign). For GPU users; NOT run here: see docs/deploy.md.
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0),
# configs/mmdet/instance-seg/instance-seg_tensorrt_dynamic-320x320-1344x1344.py
_base_ = ['./instance-seg_onnxruntime_dynamic.py']
# opset 11 as in mmdeploy: RoIAlign and NMS become its TensorRT plugins
onnx_config = dict(opset_version=11)
backend_config = dict(
    type='tensorrt',
    common_config=dict(fp16_mode=False, max_workspace_size=1 << 30),
    model_inputs=[
        dict(input_shapes=dict(input=dict(min_shape=[1, 3, 320, 320],
                                          opt_shape=[1, 3, 800, 1344],
                                          max_shape=[1, 3, 1344, 1344])))
    ])
