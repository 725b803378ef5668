# mmdeploy deploy config: segmentor (UperNet) -> ONNX Runtime, static input
# shape (the size of the image the export runs on: the demo's 192x192).
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0),
# configs/mmseg/segmentation_onnxruntime_static-512x512.py with its _base_
# files inlined (mmdeploy's wheel ships no configs). Changed: input_shape None
# (not 512x512), opset 16, and with_argmax=False: the model outputs the
# logits (mmdeploy's End2EndModel takes the argmax), so they can be compared
# with PyTorch's.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=16,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    # True needs mmdeploy's TorchScript extension, not built for torch 2.14
    optimize=False)
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=False)
backend_config = dict(type='onnxruntime')
