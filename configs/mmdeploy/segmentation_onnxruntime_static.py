# mmdeploy deploy config: segmentor (UperNet) -> ONNX Runtime, static input
# shape (the size of the image the export runs on: the demo's 192x192).
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0),
# configs/mmseg/segmentation_onnxruntime_static-512x512.py and its _base_
# files. Changed: input_shape None (not 512x512), and with_argmax=False: the
# model outputs the logits (mmdeploy's End2EndModel takes the argmax), so
# they can be compared with PyTorch's.
_base_ = ['./_base_/onnx_config.py']
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=False)
backend_config = dict(type='onnxruntime')
