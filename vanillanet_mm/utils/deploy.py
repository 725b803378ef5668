"""A whole fused detector/segmentor through mmdeploy to ONNX Runtime, checked.

Used by ``tools/deploy.py``. mmdeploy (the ``deploy`` extra) is imported only
here and only when called, so the rest of the package works without it.

Three fixes for this stack are applied at run time by :func:`apply_patches`
(nothing in site-packages is edited):

* torch 2.14's ``torch.onnx.export`` defaults to ``dynamo=True``, the new
  exporter, which mmdeploy's rewriters do not support (it fails on a missing
  ``onnxscript``); the default becomes ``dynamo=False`` (the TorchScript
  exporter mmdeploy was written for; a torch without the flag has only that
  one and is left as it is). The export runs in this process
  (mmdeploy's own ``tools/deploy.py`` spawns workers, which would not see the
  patch), so every ``torch.onnx.export`` call sees it.
* mmcv 2.1's ``ops/point_sample.py`` builds ``torch.tensor(x.shape[2:])``,
  which tracing freezes into a constant: ``SimpleRoIAlign`` exported with
  dynamic shapes then samples wrong features at other image sizes. The shape
  is computed with ``torch._shape_as_tensor`` instead, which stays a graph
  value; in eager mode it is the same numbers.
* mmdeploy's symbolic for mmcv's ``RoIAlign`` (ONNX Runtime: the standard
  ``RoiAlign``) imports ``torch.onnx.symbolic_opset9._cast_Long``, which
  torch 2.14 no longer has; it is put back (a Cast to int64).
"""
import copy
import functools
import importlib
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

import torch

from .compat import onnx_export_kwargs
from .errors import ConfigError, FusionError
from .latency import summarize
from .package import config_path

MMDEPLOY_VERSION = '1.3.1'
INSTALL_HINT = ("pip install -e '.[deploy]' && pip install --no-deps "
                f'mmdeploy=={MMDEPLOY_VERSION} (what scripts/setup_env.sh '
                'does; --no-deps: its pins would downgrade onnx and protobuf)')


def require_mmdeploy() -> None:
    """Raise one clear error when the ``deploy`` extra is missing."""
    missing = []
    for mod in ('mmdeploy', 'onnx', 'onnxruntime', 'aenum', 'multiprocess'):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ConfigError(f'deploying needs {", ".join(missing)} (the deploy '
                          f'extra): {INSTALL_HINT}')
    import mmdeploy
    if mmdeploy.__version__ != MMDEPLOY_VERSION:
        raise ConfigError(f'mmdeploy {mmdeploy.__version__} is installed; '
                          f'this tool is checked with {MMDEPLOY_VERSION}: '
                          f'{INSTALL_HINT}')


def _legacy_onnx_export(export):
    @functools.wraps(export)
    def wrapper(*args, dynamo: bool = False, **kwargs):
        return export(*args, dynamo=dynamo, **kwargs)

    wrapper._vanillanet_mm_legacy = True
    return wrapper


def _shape_from_feature_map(x: torch.Tensor) -> torch.Tensor:
    """mmcv's ``get_shape_from_feature_map`` (width, height as (1, 1, 2)),
    traced as a graph value instead of a constant."""
    return torch._shape_as_tensor(x)[2:].flip(0).view(1, 1, 2).to(
        x.device).float()


def _grid_sampler_onnxruntime(g, *args):
    """``grid_sample`` for ONNX Runtime: the standard ONNX GridSample from
    opset 16 on, mmdeploy's custom ``mmdeploy::grid_sampler`` below it."""
    from mmdeploy.core import SYMBOLIC_REWRITER
    from mmdeploy.utils import get_ir_config
    ctx = SYMBOLIC_REWRITER.get_context()
    if get_ir_config(ctx.cfg).get('opset_version', 11) >= 16:
        from torch.onnx.symbolic_opset16 import grid_sampler
    else:
        from mmdeploy.pytorch.symbolics.grid_sampler import grid_sampler
    return grid_sampler(g, *args)


def _cast_long(g, input, non_blocking=False):
    """``torch.onnx.symbolic_opset9._cast_Long`` (gone in torch 2.14), which
    mmdeploy's RoIAlign symbolic for ONNX Runtime imports."""
    return g.op('Cast', input, to_i=7)  # TensorProto.INT64


_PATCHED = False


def apply_patches() -> None:
    """The run-time fixes of this module's docstring (idempotent), and
    GridSample for ONNX Runtime (see :func:`_grid_sampler_onnxruntime`)."""
    global _PATCHED
    if _PATCHED:
        return
    if onnx_export_kwargs():
        torch.onnx.export = _legacy_onnx_export(torch.onnx.export)
    opset9 = importlib.import_module('torch.onnx.symbolic_opset9')
    if not hasattr(opset9, '_cast_Long'):
        opset9._cast_Long = _cast_long
    # ``mmcv.ops.point_sample`` is the function (mmcv.ops re-exports it over
    # the module's name): patch the module itself
    point_sample = importlib.import_module('mmcv.ops.point_sample')
    point_sample.get_shape_from_feature_map = _shape_from_feature_map
    from mmdeploy.core import SYMBOLIC_REWRITER
    SYMBOLIC_REWRITER.register_symbolic(
        'grid_sampler', backend='onnxruntime',
        is_pytorch=True)(_grid_sampler_onnxruntime)
    _PATCHED = True


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
def load_fused_model(cfg, checkpoint: str):
    """The config's model with ``checkpoint`` (training or fused form),
    fused and on the CPU; ``cfg.model.backbone.deploy`` is set to True."""
    from mmengine.runner import load_checkpoint

    from ..models.checkpoint import (
        check_model_checkpoint,
        checkpoint_act_learn,
        extract_state_dict,
        layout_of,
        read_checkpoint,
        to_backbone_state_dict,
    )
    from .scope import build_model
    if cfg.model.get('backbone', {}).get('type') != 'VanillaNet':
        raise ConfigError('the config\'s model.backbone is not a VanillaNet: '
                          'nothing to fuse (this tool deploys VanillaNet '
                          'models)')
    sd = extract_state_dict(read_checkpoint(checkpoint), checkpoint)
    layout = layout_of(to_backbone_state_dict(sd, keep_head=True),
                       checkpoint)
    cfg.model.backbone.deploy = layout == 'deploy'
    model = build_model(cfg)
    sd = check_model_checkpoint(model, checkpoint)
    act_learn = checkpoint_act_learn(sd)
    if layout == 'training' and act_learn != 1:
        raise FusionError(
            f'{checkpoint} has act_learn (λ) = {act_learn:g}; the '
            'fused network computes the λ = 1 function: deploy a checkpoint '
            'from after the DeepTrainingHook reached λ = 1')
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                    logger='silent')
    if layout == 'training':
        model.backbone.switch_to_deploy()
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


# --------------------------------------------------------------- the checks
class BackendModel:
    """mmdeploy's model of ``backend_files`` (its End2EndModel) on ``device``
    (ONNX Runtime: the ONNX file, CPU)."""

    def __init__(self, deploy_cfg, model_cfg, backend_files: Sequence[str],
                 device: str = 'cpu'):
        from mmdeploy.apis import build_task_processor
        task = build_task_processor(model_cfg, deploy_cfg, device)
        self.model = task.build_backend_model(
            list(backend_files),
            data_preprocessor_updater=task.update_data_preprocessor).eval()
        self.task, self.device = task, device

    def raw(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The graph's outputs by name for a preprocessed batch (on CPU)."""
        out = self.model.wrapper({'input': inputs.to(self.device)})
        return {k: v.cpu() for k, v in out.items()}


class RewrittenModel:
    """mmdeploy's PyTorch model: ``model`` under the rewrites the export used
    (its forward returns what the ONNX graph returns)."""

    def __init__(self, model, deploy_cfg):
        from mmdeploy.core import patch_model
        from mmdeploy.utils import IR, get_backend, get_ir_config
        self.backend = get_backend(deploy_cfg).value
        self.opset = get_ir_config(deploy_cfg).get('opset_version', 11)
        self.cfg = deploy_cfg
        self.model = patch_model(copy.deepcopy(model), cfg=deploy_cfg,
                                 backend=self.backend, ir=IR.ONNX)

    @torch.no_grad()
    def __call__(self, batches) -> List[List[torch.Tensor]]:
        """The outputs for each ``(inputs, data_samples)`` of ``batches``
        (one rewriter context for all: entering one costs seconds)."""
        from mmdeploy.core import RewriterContext
        from mmdeploy.utils import IR
        outputs = []
        with RewriterContext(cfg=self.cfg, backend=self.backend, ir=IR.ONNX,
                             opset=self.opset):
            for inputs, data_samples in batches:
                out = self.model(inputs, copy.deepcopy(data_samples),
                                 mode='predict')
                out = list(out) if isinstance(out, (tuple, list)) else [out]
                outputs.append([o.cpu() for o in out])
        return outputs


def test_dataloader(cfg):
    """The config's test loader, one image a batch, in this process."""
    from mmengine.runner import Runner
    loader = copy.deepcopy(cfg.test_dataloader)
    loader.update(batch_size=1, num_workers=0, persistent_workers=False)
    return Runner.build_dataloader(loader)


@torch.no_grad()
def evaluate(model, loader, evaluator_cfg,
             input_shape: Optional[Sequence[int]] = None):
    """Metrics of ``model`` on ``loader`` and its ms per image (data
    preprocessing + forward + postprocessing; loading excluded).
    ``input_shape`` (H, W): a static model's only size, checked first."""
    from mmengine.evaluator import Evaluator
    evaluator = Evaluator(copy.deepcopy(evaluator_cfg))
    evaluator.dataset_meta = loader.dataset.metainfo
    times = []
    for batch in loader:
        start = time.perf_counter()
        data = model.data_preprocessor(batch, False)
        shape = tuple(data['inputs'].shape[2:])
        if input_shape is not None and shape != tuple(input_shape):
            raise ConfigError(
                f'the ONNX model is static at {tuple(input_shape)} but a test '
                f'image is {shape} after preprocessing: deploy with --dynamic')
        outputs = model(**data, mode='predict')
        times.append((time.perf_counter() - start) * 1e3)
        evaluator.process(data_samples=outputs, data_batch=batch)
    return evaluator.evaluate(len(loader.dataset)), times


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.


def compare_outputs(names: Sequence[str], ref: Sequence[torch.Tensor],
                    got: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Max differences of ONNX Runtime's outputs vs mmdeploy's PyTorch ones:
    detection: boxes (px), scores, labels (count of differing), masks;
    segmentation: logits, absolute and relative to their max."""
    ref = dict(zip(names, ref))
    got = {k: torch.as_tensor(v).cpu() for k, v in got.items()}
    differing = [k for k in names if ref[k].shape != got[k].shape]
    if differing:  # e.g. another number of detections
        return dict(shapes_differing=float(len(differing)))
    if 'dets' in ref:
        order = match_detections(ref['dets'][0], ref['labels'][0],
                                 got['dets'][0], got['labels'][0])
        got = {k: v[:, order] for k, v in got.items()}
        out = dict(
            num_dets=float(ref['dets'].shape[1]),
            reordered=float((order != torch.arange(len(order))).sum()),
            box_px=_max_abs(ref['dets'][..., :4], got['dets'][..., :4]),
            score=_max_abs(ref['dets'][..., 4], got['dets'][..., 4]),
            labels_differing=float((ref['labels'] != got['labels']).sum()))
        if 'masks' in ref:
            out['mask'] = _max_abs(ref['masks'], got['masks'])
        return out
    a, b = ref[names[0]], got[names[0]]
    scale = float(a.abs().max()) or 1.
    return dict(logits=_max_abs(a, b), logits_relative=_max_abs(a, b) / scale)


def match_detections(ref_dets, ref_labels, dets, labels,
                     score_tol: float = 1e-4) -> torch.Tensor:
    """For each reference detection (K, 5), the index of its counterpart in
    ``dets``: itself unless scores tie (within ``score_tol``, same label),
    then the tied detection with the nearest box. Two runtimes may order
    detections of equal score differently; nothing else is forgiven."""
    k = len(ref_dets)
    box = (ref_dets[:, None, :4] - dets[None, :, :4]).abs().amax(-1)
    tie = ((ref_dets[:, None, 4] - dets[None, :, 4]).abs() <= score_tol) & (
        ref_labels[:, None] == labels[None, :])
    cost = torch.where(tie, box, torch.full_like(box, float('inf')))
    order, used = torch.arange(k), torch.zeros(k, dtype=torch.bool)
    for i in range(k):
        c = cost[i].masked_fill(used, float('inf'))
        j = int(c.argmin())
        if torch.isfinite(c[j]):  # else: no counterpart, keep i (it shows)
            order[i] = j
            used[j] = True
    return order


def merge_max(rows: List[Dict[str, float]]) -> Dict[str, float]:
    keys = {k for r in rows for k in r}
    return {k: max(r.get(k, 0.) for r in rows) for k in sorted(keys)}


#: input sizes (H, W) at which a dynamic export is compared with PyTorch
DYNAMIC_SIZES = ((160, 224), (192, 192), (256, 320))


def deploy(cfg, checkpoint: str, work_dir: str, dynamic: bool = False,
           test: bool = False, compare_images: int = 5,
           deploy_cfg_path: Optional[str] = None, device: str = 'cpu',
           log=print) -> dict:
    """Fuse, export ``work_dir/end2end.onnx``, convert it for the deploy
    config's backend (ONNX Runtime: nothing to do) and, with ``test``, check
    it (see tools/deploy.py); returns the report (also written as
    ``work_dir/deploy_report.json`` when ``test``)."""
    from mmengine.config import Config

    from .data_check import check_dataset
    from .fileio import atomic_write_json
    require_mmdeploy()
    from mmdeploy.backend.base import get_backend_manager
    from mmdeploy.utils import get_backend
    apply_patches()
    t0 = time.perf_counter()
    model = load_fused_model(cfg, checkpoint)
    deploy_cfg_path = deploy_cfg_path or deploy_config_path(
        cfg.default_scope, bool(getattr(model, 'with_mask', False)), dynamic)
    # the export runs on the first test image
    check_dataset(cfg, ('test_dataloader', ))
    deploy_cfg = Config.fromfile(deploy_cfg_path)
    backend = get_backend(deploy_cfg).value
    if backend == 'tensorrt' and any(type(m).__name__ == 'SimpleRoIAlign'
                                     for m in model.modules()):
        raise ConfigError(
            'mmdeploy\'s TensorRT RoI extractor takes mmcv\'s RoIAlign only, '
            'and this model uses SimpleRoIAlign (the demo Mask R-CNN): deploy '
            'it to ONNX Runtime, or train with RoIAlign for TensorRT')
    os.makedirs(work_dir, exist_ok=True)
    loader = test_dataloader(cfg)
    img = loader.dataset[0]['data_samples'].img_path
    onnx_file = export_onnx(model, deploy_cfg, cfg, img, work_dir)
    log(f'wrote {onnx_file} ({deploy_cfg_path})')
    manager = get_backend_manager(backend)
    gpu = backend != 'onnxruntime'
    if not manager.is_available() or gpu and not (
            device.startswith('cuda') and torch.cuda.is_available()):
        raise ConfigError(
            f'{onnx_file} is written; {backend} needs '
            f'{"TensorRT and --device cuda:0 on a GPU" if gpu else backend} '
            'to go on: run this command where it has them')
    backend_files = manager.to_backend(
        ir_files=[onnx_file], work_dir=work_dir, deploy_cfg=deploy_cfg,
        device=device)
    seconds = dict(export=time.perf_counter() - t0)
    report = dict(config=cfg.filename, checkpoint=checkpoint,
                  deploy_cfg=deploy_cfg_path, backend=backend,
                  backend_files=list(backend_files), device=device,
                  dynamic=dynamic, onnx_ops=onnx_ops(onnx_file))
    if not test:
        return report

    t1 = time.perf_counter()
    deployed = BackendModel(deploy_cfg, cfg, backend_files, device)
    model.to(device)
    rewritten = RewrittenModel(model, deploy_cfg)
    names = deploy_cfg.onnx_config.output_names
    # numerics vs mmdeploy's PyTorch model on the first test images and,
    # when dynamic, on the first one resized to other sizes
    cases, sizes = {}, set()
    for i, batch in enumerate(loader):
        if i == compare_images:
            break
        data = model.data_preprocessor(batch, False)
        sizes.add(tuple(data['inputs'].shape[2:]))
        if len(sizes) > 1 and not dynamic:
            raise ConfigError(
                f'test images come in several sizes {sorted(sizes)} after '
                'preprocessing but a static ONNX model takes one: deploy '
                'with --dynamic (detection), or resize them to one size in '
                'the test pipeline')
        cases[i] = (data['inputs'], data['data_samples'])
    for h, w in DYNAMIC_SIZES if dynamic else ():
        data, inputs = deployed.task.create_input(
            img, (w, h), data_preprocessor=model.data_preprocessor)
        cases[f'{h}x{w}'] = (inputs, data['data_samples'])
    rows = {key: compare_outputs(names, ref, deployed.raw(case[0]))
            for (key, case), ref in zip(cases.items(),
                                        rewritten(cases.values()))}
    images = [row for key, row in rows.items() if isinstance(key, int)]
    numerics = dict(images=len(images), sizes=sorted(sizes),
                    **merge_max(images))
    if dynamic:
        numerics['dynamic_sizes'] = {k: v for k, v in rows.items()
                                     if isinstance(k, str)}
    seconds['compare'] = time.perf_counter() - t1

    static_shape = None if dynamic else next(iter(sizes))
    metrics, latency = {}, {}
    for name, m, shape in ((backend, deployed.model, static_shape),
                           ('pytorch_fused', model, None)):
        t = time.perf_counter()
        res, times = evaluate(m, loader, cfg.test_evaluator, shape)
        metrics[name] = {k: float(v) for k, v in res.items()}
        latency[name] = dict(summarize(times), images=len(times))
        seconds[f'test_{name}'] = time.perf_counter() - t
    metrics['difference'] = {k: metrics[backend][k] - v
                             for k, v in metrics['pytorch_fused'].items()}
    seconds['total'] = time.perf_counter() - t0
    report.update(metrics=metrics, numerics_vs_mmdeploy_pytorch=numerics,
                  latency_ms_per_image=latency, seconds=seconds)
    atomic_write_json(report, osp.join(work_dir, 'deploy_report.json'),
                      indent=1)
    return report


def onnx_ops(onnx_file: str) -> Dict[str, List[str]]:
    """The ONNX graph's operator types by domain ('' = standard ONNX)."""
    import onnx
    ops: Dict[str, set] = {}
    for node in onnx.load(onnx_file, load_external_data=False).graph.node:
        ops.setdefault(node.domain or 'ai.onnx', set()).add(node.op_type)
    return {k: sorted(v) for k, v in sorted(ops.items())}
