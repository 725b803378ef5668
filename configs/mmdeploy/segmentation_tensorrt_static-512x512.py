# mmdeploy deploy config: segmentor (UperNet) -> TensorRT, static 512x512
# (ADE20K scale, e.g. configs/upernet/vanillanet13_ade20k.py).
# For GPU users; NOT run here (no GPU, no TensorRT): see README "Deploy".
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0),
# configs/mmseg/segmentation_tensorrt_static-512x512.py with its _base_ files
# inlined (mmdeploy's wheel ships no configs). Changed: with_argmax=False (the
# logits, as our ONNX Runtime config, so they can be compared with PyTorch).
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=[512, 512],
    # True needs mmdeploy's TorchScript extension, not built for torch 2.14
    optimize=False)
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=False)
backend_config = dict(
    type='tensorrt',
    common_config=dict(fp16_mode=False, max_workspace_size=1 << 30),
    model_inputs=[
        dict(
            input_shapes=dict(
                input=dict(
                    min_shape=[1, 3, 512, 512],
                    opt_shape=[1, 3, 512, 512],
                    max_shape=[1, 3, 512, 512])))
    ])
