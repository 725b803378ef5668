# mmdeploy deploy config: segmentor (UperNet) -> TensorRT, static 512x512
# (ADE20K scale, e.g. configs/upernet/vanillanet13_ade20k.py).
# For GPU users; NOT run here: see docs/deploy.md.
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0),
# configs/mmseg/segmentation_tensorrt_static-512x512.py (with_argmax=False
# as in our ONNX Runtime config).
_base_ = ['./segmentation_onnxruntime_static.py']
# opset 11 as in mmdeploy's TensorRT configs
onnx_config = dict(opset_version=11, input_shape=[512, 512])
backend_config = dict(
    type='tensorrt',
    common_config=dict(fp16_mode=False, max_workspace_size=1 << 30),
    model_inputs=[
        dict(input_shapes=dict(input=dict(min_shape=[1, 3, 512, 512],
                                          opt_shape=[1, 3, 512, 512],
                                          max_shape=[1, 3, 512, 512])))
    ])
