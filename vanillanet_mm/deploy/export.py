"""The fused model, and its export through mmdeploy's rewriters to ONNX."""
import copy
import os
import os.path as osp

from ..utils.errors import ConfigError
from ..utils.package import config_path


def deploy_config_path(scope: str, with_mask: bool, dynamic: bool) -> str:
    """This repo's mmdeploy config for ONNX Runtime (configs/mmdeploy/)."""
    shape = 'dynamic' if dynamic else 'static'
    if scope == 'mmseg':
        if dynamic:
            raise ConfigError(
                '--dynamic is for detection: mmdeploy exports a segmentor\'s '
                'adaptive pooling (UperNet\'s PPM) with kernels fixed at the '
                'export size, so other sizes would be approximate; deploy '
                'static (the default) at the test size')
        name = 'segmentation_onnxruntime_static.py'
    elif with_mask:
        name = f'instance-seg_onnxruntime_{shape}.py'
    else:
        raise ConfigError(
            'configs/mmdeploy/ holds deploy configs for Mask R-CNN and '
            'UperNet; for a detector without masks pass --deploy-cfg with '
            "mmdeploy's configs/mmdet/detection/detection_onnxruntime_"
            f'{shape}.py (its source repository)')
    return config_path(osp.join('mmdeploy', name))


# ---------------------------------------------------------------- the model
def load_model(cfg, checkpoint: str):
    """The config's model with exactly the weights of ``checkpoint``, on the
    CPU, in eval mode; and the checkpoint's state dict."""
    from mmengine.runner import load_checkpoint

    from ..apis import build_model
    from ..models.checkpoint import check_model_checkpoint
    from ..utils.compat import mmengine_checkpoint_objects
    model = build_model(cfg)
    sd = check_model_checkpoint(model, checkpoint)
    with mmengine_checkpoint_objects():
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
    return model.eval(), sd


def load_fused_model(cfg, checkpoint: str):
    """The config's model with ``checkpoint``, on the CPU, in eval mode. A
    VanillaNet backbone (training or fused form) is fused and
    ``cfg.model.backbone.deploy`` set to True; another backbone (the ResNet
    baselines) has nothing to fuse."""
    from ..models.checkpoint import (
        LAYOUT_ARGS,
        CheckpointError,
        backbone_layout,
        check_fusable_checkpoint,
    )
    if cfg.model.get('backbone', {}).get('type') != 'VanillaNet':
        return load_model(cfg, checkpoint)[0]
    layout = backbone_layout(checkpoint)
    if layout is None:
        raise CheckpointError(f'{checkpoint} holds no VanillaNet backbone '
                              '(no backbone.stem* keys): pass a checkpoint '
                              "of this config's model")
    cfg.model.backbone.update(LAYOUT_ARGS[layout])  # built as it was saved
    model, sd = load_model(cfg, checkpoint)
    check_fusable_checkpoint(sd, checkpoint, 'deploy the PyTorch model '
                             'as it is (tools/test.py without --deploy)')
    model.backbone.switch_to_deploy()  # a no-op on a fused checkpoint
    # the plain PyTorch activation: what runs on a CPU and what is exported
    model.backbone.set_act_impl('torch')
    cfg.model.backbone.deploy = True
    return model.eval()


# --------------------------------------------------------------- the export
def export_onnx(model, deploy_cfg, model_cfg, img: str, work_dir: str,
                save_file: str = 'end2end.onnx') -> str:
    """mmdeploy's ``torch2onnx`` on a model built here (in this process)."""
    from mmdeploy.apis import build_task_processor
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import (
        get_backend,
        get_dynamic_axes,
        get_input_shape,
        get_onnx_config,
    )
    # the task processor only prepares the input, on the CPU where the
    # export runs; mmdeploy refuses a CPU for a GPU backend's processor
    cpu_cfg = copy.deepcopy(deploy_cfg)
    cpu_cfg.backend_config = dict(type='onnxruntime')
    task = build_task_processor(model_cfg, cpu_cfg, 'cpu')
    data, inputs = task.create_input(
        img, get_input_shape(deploy_cfg),
        data_preprocessor=model.data_preprocessor)
    if isinstance(inputs, list) and len(inputs) == 1:
        inputs = inputs[0]
    onnx_cfg = get_onnx_config(deploy_cfg)
    names = onnx_cfg['input_names'] + onnx_cfg['output_names']
    prefix = osp.join(work_dir, '.' + osp.splitext(save_file)[0] + '.tmp')
    dst = osp.join(work_dir, save_file)
    try:
        # a copy: mmdeploy's patch_model rewrites modules in place
        export(copy.deepcopy(model), inputs,
               input_metas=dict(data_samples=data['data_samples'],
                                mode='predict'),
               output_path_prefix=prefix,
               backend=get_backend(deploy_cfg).value,
               input_names=onnx_cfg['input_names'],
               output_names=onnx_cfg['output_names'],
               context_info=dict(deploy_cfg=deploy_cfg),
               opset_version=onnx_cfg.get('opset_version', 11),
               dynamic_axes=get_dynamic_axes(deploy_cfg, names),
               keep_initializers_as_inputs=onnx_cfg.get(
                   'keep_initializers_as_inputs', False),
               optimize=onnx_cfg.get('optimize', False))
        os.replace(prefix + '.onnx', dst)
    finally:
        if osp.exists(prefix + '.onnx'):
            os.unlink(prefix + '.onnx')
    return dst
