# mmdeploy deploy config: Mask R-CNN (instance segmentation) -> ONNX Runtime,
# dynamic batch, height and width.
# From open-mmlab/mmdeploy v1.3.1 (Apache-2.0),
# configs/mmdet/instance-seg/instance-seg_onnxruntime_dynamic.py and its
# _base_ files (mmdet/_base_/base_instance-seg_dynamic.py).
_base_ = ['./instance-seg_onnxruntime_static.py']
onnx_config = dict(
    dynamic_axes={
        'input': {0: 'batch', 2: 'height', 3: 'width'},
        'dets': {0: 'batch', 1: 'num_dets'},
        'labels': {0: 'batch', 1: 'num_dets'},
        'masks': {0: 'batch', 1: 'num_dets', 2: 'height', 3: 'width'},
    })
