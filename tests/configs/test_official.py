"""Faithful to the official VanillaNet work: its COCO recipes, its released
checkpoints (no λ key), and λ on every load path.

The official values below are transcribed from huawei-noah/VanillaNet
``object_detection/configs/vanillanet/{mask_rcnn,retinanet}_vanillanet_13_
mstrain_480-1024_adamw.py`` (mmdet 2.x); each row is also a row of the
table in docs/official_recipes.md.
"""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.runner import Runner, load_checkpoint

from vanillanet_mm.apis import build_model
from vanillanet_mm.models import VanillaNet
from vanillanet_mm.models.checkpoint import ACT_LEARN_KEY
from vanillanet_mm.utils.numerics import randomize_bn

from mm_configs import DET_CFG, write_config

ROOT = Path(__file__).parents[2]
MASK_RCNN = ROOT / 'configs/mask_rcnn/vanillanet13_coco.py'
RETINANET = ROOT / 'configs/retinanet/vanillanet13_coco.py'

# ---------------------------------------------------------------- recipes
OFFICIAL_SCALES = [(1333, s) for s in (480, 512, 544, 576, 608, 640, 672,
                                       704, 736, 768, 800, 832, 864, 896,
                                       928, 960, 992, 1024)]


def _pipeline_step(pipeline, type_):
    return next(t for t in pipeline if t['type'] == type_)


# row name -> (how to read it from our config, official Mask R-CNN value,
# official RetinaNet value)
RECIPE = {
    'GPUs x images per GPU': (
        lambda c: (c.auto_scale_lr.base_batch_size //
                   c.train_dataloader.batch_size,
                   c.train_dataloader.batch_size), (8, 4), (8, 4)),
    'lr scaling to other batches': (
        lambda c: c.auto_scale_lr.base_batch_size, 32, 32),
    'optimizer': (
        lambda c: (c.optim_wrapper.optimizer.type,
                   c.optim_wrapper.optimizer.lr,
                   tuple(c.optim_wrapper.optimizer.betas),
                   c.optim_wrapper.optimizer.weight_decay),
        ('AdamW', 1.3e-4, (0.9, 0.999), 0.05),
        ('AdamW', 8e-5, (0.9, 0.999), 0.05)),
    'gradient clipping': (
        lambda c: c.optim_wrapper.get('clip_grad'), None, None),
    'layer-wise lr decay': (
        lambda c: (c.optim_wrapper.constructor,
                   c.optim_wrapper.paramwise_cfg.decay_type,
                   c.optim_wrapper.paramwise_cfg.decay_rate,
                   c.optim_wrapper.paramwise_cfg.num_layers),
        ('VanillaNetLayerDecayOptimizerConstructor', 'layer_wise', 0.6, 6),
        ('VanillaNetLayerDecayOptimizerConstructor', 'layer_wise', 0.6, 6)),
    'warmup': (
        lambda c: (c.param_scheduler[0].type, c.param_scheduler[0].by_epoch,
                   c.param_scheduler[0].end,
                   c.param_scheduler[0].start_factor),
        ('LinearLR', False, 500, 0.001), ('LinearLR', False, 500, 0.001)),
    'lr steps (epochs), factor': (
        lambda c: (c.param_scheduler[1].type, c.param_scheduler[1].by_epoch,
                   list(c.param_scheduler[1].milestones),
                   c.param_scheduler[1].gamma),
        ('MultiStepLR', True, [10, 12], 0.1),
        ('MultiStepLR', True, [10, 11], 0.1)),
    'epochs': (lambda c: c.train_cfg.max_epochs, 12, 12),
    'train scales': (
        lambda c: (_pipeline_step(c.train_pipeline, 'RandomChoiceResize')
                   ['scales'], _pipeline_step(
                       c.train_pipeline, 'RandomChoiceResize')['keep_ratio'],
                   c.train_dataloader.dataset.pipeline == c.train_pipeline),
        (OFFICIAL_SCALES, True, True), (OFFICIAL_SCALES, True, True)),
    'flip': (lambda c: _pipeline_step(c.train_pipeline, 'RandomFlip')['prob'],
             0.5, 0.5),
    'test scale': (
        lambda c: (tuple(_pipeline_step(c.test_dataloader.dataset.pipeline,
                                        'Resize')['scale']),
                   _pipeline_step(c.test_dataloader.dataset.pipeline,
                                  'Resize')['keep_ratio'],
                   any(t['type'] == 'RandomFlip'
                       for t in c.test_dataloader.dataset.pipeline)),
        ((1333, 800), True, False), ((1333, 800), True, False)),
    'normalisation, padding': (
        lambda c: (c.model.data_preprocessor.mean,
                   c.model.data_preprocessor.std,
                   c.model.data_preprocessor.bgr_to_rgb,
                   c.model.data_preprocessor.pad_size_divisor),
        ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375], True, 32),
        ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375], True, 32)),
    'backbone': (
        lambda c: (c.model.backbone.arch, c.model.backbone.act_num,
                   c.model.backbone.norm_cfg.type,
                   c.model.backbone.norm_cfg.eps),
        ('vanillanet_13', 4, 'SyncBN', 1e-6),
        ('vanillanet_13', 4, 'SyncBN', 1e-6)),
    'ImageNet weights': (
        lambda c: (Path(c.model.backbone.init_cfg.checkpoint).name,
                   c.model.backbone.init_cfg.entry),
        ('vanillanet_13_act_num_4_kd_pretrain.pth', 'model_ema'),
        ('vanillanet_13_act_num_4_kd_pretrain.pth', 'model_ema')),
    'stages feeding the FPN': (
        lambda c: (tuple(c.model.backbone.out_indices),
                   list(c.model.neck.in_channels)),
        ((0, 1, 8, 10), [512, 1024, 2048, 4096]),
        ((1, 8, 10), [1024, 2048, 4096])),
    'FPN outputs': (
        lambda c: (c.model.neck.get('start_level', 0), c.model.neck.num_outs,
                   c.model.neck.get('add_extra_convs', False)),
        (0, 5, False), (0, 5, 'on_input')),
}


@pytest.mark.parametrize('row', list(RECIPE))
def test_recipes_match_the_official_configs(row):
    read, mask_rcnn, retinanet = RECIPE[row]
    assert read(Config.fromfile(str(MASK_RCNN))) == mask_rcnn
    assert read(Config.fromfile(str(RETINANET))) == retinanet
    table = (ROOT / 'docs/official_recipes.md').read_text()
    assert f'| {row} |' in table  # the docs compare the same rows


def test_auto_scale_lr_scales_from_the_official_batch(tmp_path):
    """`--auto-scale-lr` on 1 process x 4 images: MMEngine's Runner scales
    the official lr (for 8 x 4) by 4 / 32."""
    cfg = Config.fromfile(str(MASK_RCNN))
    cfg.model.backbone.init_cfg = None
    cfg.auto_scale_lr.enable = True
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    optim = runner.build_optim_wrapper(cfg.optim_wrapper)
    runner.scale_lr(optim, cfg.auto_scale_lr)
    # (mmengine's OptimWrapper appends a group of its own, without lr_scale)
    groups = [g for g in optim.param_groups if 'lr_scale' in g]
    assert {round(g['lr_scale'], 6) for g in groups} == {
        round(0.6**k, 6) for k in range(8)}  # layer groups 0..7 as upstream
    for g in groups:
        assert g['lr'] == pytest.approx(1.3e-4 * g['lr_scale'] * 4 / 32)


# --------------------------------------------------------- λ on load paths
def _official_backbone_sd(arch, seed=0):
    """Backbone weights in the official key layout: no λ key."""
    model = VanillaNet(arch, act_num=2)
    randomize_bn(model, seed)
    sd = model.state_dict()
    del sd[ACT_LEARN_KEY]
    return sd


def test_backbone_without_lambda_loads_at_one(tiny_arch, tmp_path):
    sd = _official_backbone_sd(tiny_arch)
    for strict in (True, False):
        model = VanillaNet(tiny_arch, act_num=2, act_learn=0.3)
        model.load_state_dict(sd, strict=strict)
        assert model.act_learn == 1.0
        assert all(s.act_learn == 1.0 for s in model.stages)
    path = tmp_path / 'official.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in sd.items()}},
               path)
    model = VanillaNet(tiny_arch, act_num=2, act_learn=0.3)
    load_checkpoint(model, str(path), revise_keys=[(r'^backbone\.', '')])
    assert model.act_learn == 1.0
    # a state dict without this backbone's weights leaves λ alone
    model = VanillaNet(tiny_arch, act_num=2, act_learn=0.3)
    model.load_state_dict({}, strict=False)
    assert model.act_learn == 0.3


def test_own_checkpoint_keeps_its_lambda(tiny_arch, tmp_path):
    src = VanillaNet(tiny_arch, act_num=2, act_learn=0.25)
    path = tmp_path / 'ours.pth'
    torch.save({'state_dict': src.state_dict()}, path)
    for load in (lambda m: m.load_state_dict(src.state_dict()),
                 lambda m: load_checkpoint(m, str(path))):
        model = VanillaNet(tiny_arch, act_num=2, act_learn=1.0)
        load(model)
        assert model.act_learn == 0.25


def test_fresh_model_is_the_official_function(tiny_arch):
    """λ rule: a fresh model computes what official weights compute (λ=1)."""
    model = VanillaNet(tiny_arch, act_num=2).eval()
    assert model.act_learn == 1.0
    x = torch.randn(1, 3, 64, 64)
    blk = model.stages[1]
    y = model.stages[0](model.stem2(model.stem1(x)))
    assert torch.allclose(blk(y), blk.act(blk.pool(blk.conv2(blk.conv1(y)))))


def _mmdet2_checkpoint(model, path, seed=0):
    """A detector checkpoint as mmdet 2.x's runner wrote the official ones:
    {'meta', 'state_dict', 'optimizer'}, backbone keys without λ."""
    randomize_bn(model, seed)
    sd = {k: v.clone() for k, v in model.state_dict().items()
          if not k.endswith(ACT_LEARN_KEY)}
    torch.save(dict(meta=dict(mmdet_version='2.28.1', epoch=12, iter=87960,
                              CLASSES=('person', 'bicycle')),
                    state_dict=sd,
                    optimizer=dict(state={}, param_groups=[])), path)
    return sd


def test_runner_load_from_sets_lambda_one(tmp_path):
    """MMEngine's Runner `load_from` (what mmdet's own tools/test.py does)
    on a tiny user-project Mask R-CNN built at λ = 0.3."""
    cfg = Config.fromfile(write_config(tmp_path, DET_CFG))
    cfg.model.backbone.act_learn = 0.3
    ckpt = tmp_path / 'official_detector.pth'
    _mmdet2_checkpoint(build_model(cfg), ckpt)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_from = str(ckpt)
    runner = Runner.from_cfg(cfg)
    assert runner.model.backbone.act_learn == 0.3
    runner.load_or_resume()
    assert runner.model.backbone.act_learn == 1.0


# ------------------------------------- the VN13 Mask R-CNN, official layout
def _tiny_coco(root: Path, num_images=1, size=(160, 224)):
    """A COCO-layout val set: val2017/*.jpg + annotations with all 80
    COCO categories (so any predicted label maps to a category)."""
    import cv2
    from mmdet.datasets import CocoDataset
    (root / 'val2017').mkdir(parents=True)
    (root / 'annotations').mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(num_images):
        h, w = size
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.rectangle(img, (30, 40), (120, 130), (20, 200, 40), -1)
        cv2.imwrite(str(root / 'val2017' / f'{i:012d}.jpg'), img)
        images.append(dict(id=i + 1, file_name=f'{i:012d}.jpg', height=h,
                           width=w))
        anns.append(dict(id=i + 1, image_id=i + 1, category_id=1,
                         bbox=[30, 40, 90, 90], area=8100, iscrowd=0,
                         segmentation=[[30, 40, 120, 40, 120, 130, 30,
                                        130]]))
    cats = [dict(id=i + 1, name=n)
            for i, n in enumerate(CocoDataset.METAINFO['classes'])]
    (root / 'annotations' / 'instances_val2017.json').write_text(
        json.dumps(dict(images=images, annotations=anns, categories=cats)))


@pytest.mark.slow
def test_official_vn13_mask_rcnn_checkpoint(tmp_path):
    """The released detector's layout (mmdet 2.x, no λ) through tools/test.py
    plain and --deploy (same detections), Runner load_from and
    load_checkpoint (λ = 1), at one small image."""
    cfg = Config.fromfile(str(MASK_RCNN))
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.act_learn = 0.3  # must end at 1 after every load
    model = revert_sync_batchnorm(build_model(cfg))
    # one class wins every RoI, so the detections depend on the boxes (and
    # so on the backbone's features), not on a near-uniform softmax
    model.roi_head.bbox_head.fc_cls.bias.data[1] = 6.0
    ckpt = tmp_path / 'mask_rcnn_vanillanet_13.pth'
    _mmdet2_checkpoint(model, ckpt)

    loaded = revert_sync_batchnorm(build_model(cfg))
    assert loaded.backbone.act_learn == 0.3
    load_checkpoint(loaded, str(ckpt), map_location='cpu')
    assert loaded.backbone.act_learn == 1.0
    del loaded

    data = tmp_path / 'coco'
    _tiny_coco(data)
    opts = ['--cfg-options', f'test_dataloader.dataset.data_root={data}/',
            f'test_evaluator.ann_file={data}/annotations/'
            'instances_val2017.json',
            # keep VN13 small on 2 cores: 224 x 320 instead of 800 x 1120
            'test_dataloader.dataset.pipeline.1.scale=(320,224)',
            'model.backbone.norm_cfg.type=BN']
    dets = {}
    for mode in ('plain', 'deploy'):
        out = tmp_path / f'{mode}.pkl'
        proc = subprocess.run(
            [sys.executable, str(ROOT / 'tools/test.py'), str(MASK_RCNN),
             str(ckpt), '--work-dir', str(tmp_path / mode), '--out', str(out),
             *(['--deploy'] if mode == 'deploy' else []), *opts],
            capture_output=True, text=True, timeout=900, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert '-> λ = 1' in proc.stdout + proc.stderr
        with open(out, 'rb') as f:
            dets[mode] = pickle.load(f)[0]['pred_instances']
    assert 'SwitchToDeployHook: fused backbone' in proc.stdout + proc.stderr
    plain, fused = dets['plain'], dets['deploy']
    assert len(plain['scores']) > 10  # detections to compare
    assert torch.equal(plain['labels'], fused['labels'])
    torch.testing.assert_close(fused['scores'], plain['scores'], rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(fused['bboxes'], plain['bboxes'], rtol=1e-4,
                               atol=1e-2)

    # Runner load_from, as mmdet's own tools/test.py loads it
    cfg.model.backbone.norm_cfg.type = 'BN'
    cfg.work_dir = str(tmp_path / 'runner')
    cfg.load_from = str(ckpt)
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    assert runner.model.backbone.act_learn == 1.0
