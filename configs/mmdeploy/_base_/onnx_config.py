# What every deploy config here shares: the ONNX export.
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0), configs/_base_/onnx_config.py
# (mmdeploy's wheel ships no configs). Changed: opset 16 (not 11), so mmcv's
# SimpleRoIAlign (grid_sample) exports to ONNX Runtime as the standard
# GridSample instead of the custom mmdeploy::grid_sampler; optimize off (it
# needs mmdeploy's TorchScript extension, not built for torch 2.14).
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=16,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=False)
