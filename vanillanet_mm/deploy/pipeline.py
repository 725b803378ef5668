"""Fuse, export, convert and check: what ``tools/deployment/deploy.py``
runs."""
import os
import os.path as osp
import time
from typing import Optional

import torch

from ..utils.errors import ConfigError
from ..utils.latency import summarize
from .backends import BackendModel, RewrittenModel
from .compare import compare_outputs, merge_max, onnx_ops
from .evaluation import build_test_dataloader, evaluate
from .export import deploy_config_path, export_onnx, load_fused_model
from .runtime import apply_patches, require_mmdeploy

#: input sizes (H, W) at which a dynamic export is compared with PyTorch
DYNAMIC_SIZES = ((160, 224), (192, 192), (256, 320))


def deploy(cfg, checkpoint: str, work_dir: str, dynamic: bool = False,
           test: bool = False, compare_images: int = 5,
           deploy_cfg_path: Optional[str] = None, device: str = 'cpu',
           log=print) -> dict:
    """Fuse, export ``work_dir/end2end.onnx``, convert it for the deploy
    config's backend (ONNX Runtime: nothing to do) and, with ``test``, check
    it (see tools/deployment/deploy.py); returns the report (also written
    as ``work_dir/deploy_report.json`` when ``test``)."""
    from mmengine.config import Config

    from ..utils.data_check import check_dataset
    from ..utils.fileio import atomic_write_json
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
    loader = build_test_dataloader(cfg)
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
