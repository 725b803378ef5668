"""Fuse, export, convert, quantize and check: what
``tools/deployment/deploy.py`` runs, as the steps of a :class:`Deployment`:
check the inputs → fuse → export → INT8 → compare → evaluate → report."""
import os
import os.path as osp
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from ..utils.errors import ConfigError
from ..utils.fileio import atomic_write_json
from ..utils.latency import summarize
from .backends import BackendModel, RewrittenModel
from .calibration import build_calibration_loader, calibration_inputs
from .compare import compare_outputs, merge_max, onnx_ops
from .evaluation import build_test_dataloader, evaluate
from .export import deploy_config_path, export_onnx, load_fused_model
from .quantize import (
    check_method,
    node_groups,
    quantize,
    require_quantizer,
    select_groups,
    static_input_shape,
)
from .runtime import deploy_patches, require_mmdeploy

#: input sizes (H, W) at which a dynamic export is compared with PyTorch
DYNAMIC_SIZES = ((160, 224), (192, 192), (256, 320))
REPORT_FILE = 'deploy_report.json'
INT8_FILE = 'end2end_int8.onnx'
INT8_SETTINGS_FILE = 'int8_calibration.json'
#: the INT8 model's name in the report, from the backend's
INT8_NAME = '{}_int8'


@dataclass(frozen=True)
class Int8Options:
    """``--int8`` and its flags: calibrate on the first ``calib_images``
    training images by ``method``, keep the node groups ``exclude`` in
    fp32; ``sensitivity``: also each group quantized alone, evaluated;
    ``symmetric``: signed activations with zero point 0 (for TensorRT)."""
    calib_images: int = 32
    method: str = 'percentile'
    exclude: Tuple[str, ...] = ()
    sensitivity: bool = False
    symmetric: bool = False

    def check(self, test: bool) -> None:
        """One line for options that cannot work; the quantizer present."""
        check_method(self.method)
        if self.calib_images < 1:
            raise ConfigError(f'--calib-images {self.calib_images}: INT8 '
                              'calibration needs at least one image')
        if self.sensitivity and not test:
            raise ConfigError('--int8-sensitivity evaluates each node group '
                              'quantized alone on the test set: add --test')
        require_quantizer(reuse_ranges=self.sensitivity)


def deploy(cfg, checkpoint: str, work_dir: str, dynamic: bool = False,
           test: bool = False, compare_images: int = 5,
           deploy_cfg_path: Optional[str] = None, device: str = 'cpu',
           int8: Optional[Int8Options] = None, log=print) -> dict:
    """Fuse, export ``work_dir/end2end.onnx``, convert it for the deploy
    config's backend (ONNX Runtime: nothing to do), with ``int8`` quantize
    it to ``work_dir/end2end_int8.onnx`` and, with ``test``, check it all
    (see tools/deployment/deploy.py); returns the report (also written as
    ``work_dir/deploy_report.json`` when ``test``)."""
    run = Deployment(cfg, checkpoint, work_dir, dynamic, device, log)
    try:
        run.check(test, int8)
        run.fuse(deploy_cfg_path)
        run.export()
        if int8:
            run.quantize(int8)
        if test:
            run.compare(compare_images)
            if int8:
                run.compare_int8()
            run.evaluate()
            if int8 and int8.sensitivity:
                run.sensitivity(int8)
            run.write_report()
    finally:
        run.close()
    return run.report


class Deployment:
    """One model through the steps of :func:`deploy`, and what they share:
    the fused model, the deploy config, the exported files, the report."""

    def __init__(self, cfg, checkpoint: str, work_dir: str, dynamic: bool,
                 device: str, log=print):
        self.cfg, self.checkpoint, self.work_dir = cfg, checkpoint, work_dir
        self.dynamic, self.device, self.log = dynamic, device, log
        self.t0 = time.perf_counter()
        self.seconds: Dict[str, float] = {}
        self.report: dict = {}
        #: evaluated on the test set: name -> model (an mmdeploy backend
        #: model or the fused PyTorch one)
        self.models: Dict[str, object] = {}
        self.calib_loader = self.scratch = self.ranges = None

    # ------------------------------------------------------------ check
    def check(self, test: bool, int8: Optional[Int8Options]) -> None:
        """What can be refused before anything is written: the extra, the
        INT8 options, the data sets (training too, for calibration)."""
        from ..utils.data_check import check_dataset
        require_mmdeploy()
        loaders = ['test_dataloader']  # the export runs on the first image
        if int8:
            int8.check(test)
            loaders.append('train_dataloader')
        check_dataset(self.cfg, loaders)
        if int8:
            self.calib_loader = build_calibration_loader(self.cfg)

    # ------------------------------------------------------------- fuse
    def fuse(self, deploy_cfg_path: Optional[str]) -> None:
        """The fused model, and the deploy config for it and its backend."""
        from mmdeploy.utils import get_backend
        from mmengine.config import Config
        self.model = load_fused_model(self.cfg, self.checkpoint)
        self.deploy_cfg_path = deploy_cfg_path or deploy_config_path(
            self.cfg.default_scope,
            bool(getattr(self.model, 'with_mask', False)), self.dynamic)
        self.deploy_cfg = Config.fromfile(self.deploy_cfg_path)
        self.backend = get_backend(self.deploy_cfg).value
        if self.backend == 'tensorrt' and any(
                type(m).__name__ == 'SimpleRoIAlign'
                for m in self.model.modules()):
            raise ConfigError(
                'mmdeploy\'s TensorRT RoI extractor takes mmcv\'s RoIAlign '
                'only, and this model uses SimpleRoIAlign (the demo Mask '
                'R-CNN): deploy it to ONNX Runtime, or train with RoIAlign '
                'for TensorRT')
        if self.calib_loader is not None and self.backend != 'onnxruntime':
            raise ConfigError(
                f'--int8 writes an ONNX Runtime model, and the deploy config '
                f'is for {self.backend}: use an ONNX Runtime deploy config '
                '(the default one, without --deploy-cfg)')

    # ----------------------------------------------------------- export
    def export(self) -> None:
        """``end2end.onnx``, converted for the backend."""
        from mmdeploy.backend.base import get_backend_manager
        os.makedirs(self.work_dir, exist_ok=True)
        self.loader = build_test_dataloader(self.cfg)
        self.img = self.loader.dataset[0]['data_samples'].img_path
        with deploy_patches():
            self.onnx_file = export_onnx(self.model, self.deploy_cfg,
                                         self.cfg, self.img, self.work_dir)
        self.log(f'wrote {self.onnx_file} ({self.deploy_cfg_path})')
        manager = get_backend_manager(self.backend)
        gpu = self.backend != 'onnxruntime'
        if not manager.is_available() or gpu and not (
                self.device.startswith('cuda') and torch.cuda.is_available()):
            raise ConfigError(
                f'{self.onnx_file} is written; {self.backend} needs '
                f'{"TensorRT and --device cuda:0 on a GPU" if gpu else "it"}'
                ' to go on: run this command where it has them')
        self.backend_files = manager.to_backend(
            ir_files=[self.onnx_file], work_dir=self.work_dir,
            deploy_cfg=self.deploy_cfg, device=self.device)
        self.seconds['export'] = time.perf_counter() - self.t0
        self.report.update(
            config=self.cfg.filename, checkpoint=self.checkpoint,
            deploy_cfg=self.deploy_cfg_path, backend=self.backend,
            backend_files=list(self.backend_files), device=self.device,
            dynamic=self.dynamic, onnx_ops=onnx_ops(self.onnx_file))

    # ------------------------------------------------------------- INT8
    def quantize(self, int8: Int8Options) -> None:
        """``end2end_int8.onnx`` next to ``end2end.onnx``, calibrated on
        the first training images, and ``int8_calibration.json``."""
        t = time.perf_counter()
        select_groups(node_groups(self.onnx_file), int8.exclude)
        self.calib_inputs, images = calibration_inputs(
            self.calib_loader, self.model.data_preprocessor,
            int8.calib_images, static_input_shape(self.onnx_file))
        if int8.sensitivity:  # one calibration for every quantization
            self.scratch = tempfile.mkdtemp(prefix='.int8-',
                                            dir=self.work_dir)
            self.ranges = osp.join(self.scratch, 'ranges.json')
        self.int8_file = osp.join(self.work_dir, INT8_FILE)
        settings = quantize(self.onnx_file, self.int8_file,
                            self.calib_inputs, int8.method, int8.exclude,
                            ranges=self.ranges, symmetric=int8.symmetric)
        self.seconds['int8'] = time.perf_counter() - t
        settings = dict(source=self.onnx_file, file=self.int8_file,
                        **settings, calibration_image_files=images,
                        seconds=self.seconds['int8'])
        atomic_write_json(settings, osp.join(self.work_dir,
                                             INT8_SETTINGS_FILE), indent=1)
        self.report['int8'] = settings
        few = (f' (the training set has {len(images)})'
               if len(images) < int8.calib_images else '')
        self.log(f'wrote {self.int8_file} ({settings["quantized_nodes"]}/'
                 f'{settings["nodes"]} Conv nodes, {int8.method}, '
                 f'{len(images)} calibration images{few}, '
                 f'{self.seconds["int8"]:.1f} s)')

    # ---------------------------------------------------------- compare
    def _cases(self, num: int) -> Dict[object, tuple]:
        """Preprocessed inputs by case: the first ``num`` test images
        (keys 0, 1, ...) and, when dynamic, the first one at other sizes
        (keys 'HxW'); checks a static model's one size."""
        cases, sizes = {}, set()
        for i, batch in enumerate(self.loader):
            if i == num:
                break
            data = self.model.data_preprocessor(batch, False)
            sizes.add(tuple(data['inputs'].shape[2:]))
            if len(sizes) > 1 and not self.dynamic:
                raise ConfigError(
                    f'test images come in several sizes {sorted(sizes)} '
                    'after preprocessing but a static ONNX model takes one: '
                    'deploy with --dynamic (detection), or resize them to '
                    'one size in the test pipeline')
            cases[i] = (data['inputs'], data['data_samples'])
        for h, w in DYNAMIC_SIZES if self.dynamic else ():
            data, inputs = self.deployed.task.create_input(
                self.img, (w, h),
                data_preprocessor=self.model.data_preprocessor)
            cases[f'{h}x{w}'] = (inputs, data['data_samples'])
        self.sizes = sorted(sizes)
        return cases

    def compare(self, num: int) -> None:
        """Raw outputs of the backend vs mmdeploy's PyTorch model (the same
        rewrites, eager) on the first ``num`` test images and, when dynamic,
        at other sizes."""
        t = time.perf_counter()
        self.deployed = BackendModel(self.deploy_cfg, self.cfg,
                                     self.backend_files, self.device)
        self.model.to(self.device)
        rewritten = RewrittenModel(self.model, self.deploy_cfg)
        names = self.deploy_cfg.onnx_config.output_names
        cases = self.cases = self._cases(num)
        raw = self.raw = {key: self.deployed.raw(case[0])
                          for key, case in cases.items()}
        rows = {key: compare_outputs(names, ref, raw[key])
                for key, ref in zip(cases, rewritten(cases.values()))}
        numerics = self._numerics(rows)
        if self.dynamic:
            numerics['dynamic_sizes'] = {k: v for k, v in rows.items()
                                         if isinstance(k, str)}
        self.report['numerics_vs_mmdeploy_pytorch'] = numerics
        self.seconds['compare'] = time.perf_counter() - t
        self.models[self.backend] = self.deployed.model

    def compare_int8(self) -> None:
        """Raw outputs of the INT8 model vs the fp32 one, in the backend,
        on the test images of :meth:`compare`."""
        t = time.perf_counter()
        int8 = BackendModel(self.deploy_cfg, self.cfg, [self.int8_file],
                            self.device)
        names = self.deploy_cfg.onnx_config.output_names
        rows = {key: compare_outputs(names, [self.raw[key][n] for n in names],
                                     int8.raw(inputs))
                for key, (inputs, _) in self.cases.items()
                if isinstance(key, int)}
        numerics = self._numerics(rows)
        # detections: an image with another count is compared by its count
        numerics['images_shapes_differing'] = sum(
            'shapes_differing' in row for row in rows.values())
        self.report['numerics_int8_vs_fp32'] = numerics
        self.seconds['compare_int8'] = time.perf_counter() - t
        self.models[INT8_NAME.format(self.backend)] = int8.model

    def _numerics(self, rows: Dict[object, Dict[str, float]]) -> dict:
        images = [row for key, row in rows.items() if isinstance(key, int)]
        return dict(images=len(images), sizes=self.sizes, **merge_max(images))

    # --------------------------------------------------------- evaluate
    def _evaluate(self, model, static: bool) -> Tuple[dict, List[float]]:
        shape = None if not static or self.dynamic else self.sizes[0]
        res, times = evaluate(model, self.loader, self.cfg.test_evaluator,
                              shape)
        return {k: float(v) for k, v in res.items()}, times

    def evaluate(self) -> None:
        """Metrics and latency of each model on the test set: the backend
        (fp32, INT8) and the fused PyTorch model."""
        self.models['pytorch_fused'] = self.model
        metrics, latency = {}, {}
        for name, model in self.models.items():
            t = time.perf_counter()
            metrics[name], times = self._evaluate(
                model, static=name != 'pytorch_fused')
            latency[name] = dict(summarize(times), images=len(times))
            self.seconds[f'test_{name}'] = time.perf_counter() - t
        fp32 = metrics[self.backend]
        metrics['difference'] = {k: fp32[k] - v for k, v in
                                 metrics['pytorch_fused'].items()}
        int8 = metrics.get(INT8_NAME.format(self.backend))
        if int8 is not None:
            metrics['difference_int8_vs_fp32'] = {k: v - fp32[k]
                                                  for k, v in int8.items()}
        self.report.update(metrics=metrics, latency_ms_per_image=latency)

    def sensitivity(self, int8: Int8Options) -> None:
        """Each node group quantized alone (the same calibration), its
        metrics on the test set and their drop from fp32 (fp32 - INT8)."""
        t = time.perf_counter()
        fp32 = self.report['metrics'][self.backend]
        dst = osp.join(self.scratch, 'group.onnx')
        table, groups = {}, node_groups(self.onnx_file)
        for i, (group, nodes) in enumerate(groups.items()):
            quantize(self.onnx_file, dst, self.calib_inputs, int8.method,
                     only=[group], ranges=self.ranges,
                     symmetric=int8.symmetric)
            model = BackendModel(self.deploy_cfg, self.cfg, [dst],
                                 self.device).model
            metrics, _ = self._evaluate(model, static=True)
            table[group] = dict(nodes=len(nodes), metrics=metrics, drop={
                k: fp32[k] - v for k, v in metrics.items()})
            self.log(f'INT8 sensitivity {i + 1}/{len(groups)}: {group}')
        self.report['int8_sensitivity'] = table
        self.seconds['int8_sensitivity'] = time.perf_counter() - t

    # ----------------------------------------------------------- report
    def write_report(self) -> None:
        self.seconds['total'] = time.perf_counter() - self.t0
        self.report['seconds'] = self.seconds
        atomic_write_json(self.report, osp.join(self.work_dir, REPORT_FILE),
                          indent=1)

    def close(self) -> None:
        """Remove the scratch folder (the calibration cache, the
        sensitivity's models)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
