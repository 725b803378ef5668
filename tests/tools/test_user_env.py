"""The package in a user's own MMDetection / MMSegmentation setup.

Installing it keeps the user's torch / torchvision / mmcv; the built wheel
(configs and tools inside, ``vanillanet_mm::`` scope) works from outside the
repository; mmdet's and mmseg's own shipped tools run our configs; mmdet's
``DetInferencer`` / mmseg's ``MMSegInferencer`` predict the same with the
training-form and the fused checkpoint.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from vanillanet_mm.apis import build_model
from vanillanet_mm.datasets import generate
from vanillanet_mm.utils.numerics import randomize_bn

from mm_configs import DET_CFG, SEG_CFG, write_config
from tool_helpers import ROOT, data_options, tool

KEPT = ('torch', 'torchvision', 'mmcv')
DET_DEMO = str(ROOT / 'configs/mask_rcnn/vanillanet_demo.py')
SEG_DEMO = str(ROOT / 'configs/upernet/vanillanet_demo.py')


def run(cmd, cwd=None, env=None, timeout=900):
    return subprocess.run([*map(str, cmd)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def tool_of(package: str, name: str) -> str:
    """A tool shipped inside an installed OpenMMLab package (.mim/tools)."""
    mod = __import__(package)
    path = osp.join(osp.dirname(mod.__file__), '.mim', 'tools', name)
    assert osp.isfile(path), path
    return path


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    generate(str(root), num_train=4, num_val=2, size=128)
    return root


# ------------------------------------------------------------ installation
def test_install_keeps_torch_and_mmcv(tmp_path):
    """`pip install .` into this environment (as a user would, dry run)
    installs nothing in place of its torch, torchvision or mmcv: on the
    default stack the newest torch stays, on the lower bound the oldest."""
    report = tmp_path / 'report.json'
    # a user's pip: no machine-wide constraint file (this machine's pip.conf
    # caps torch below the default stack's release, which would force a
    # downgrade that a user's environment would not see)
    env = dict(os.environ, PIP_CONSTRAINT=os.devnull)
    proc = run([sys.executable, '-m', 'pip', 'install', '--dry-run',
                '--no-build-isolation', '--report', report, ROOT], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {item['metadata']['name'].lower(): item['metadata']['version']
             for item in json.loads(report.read_text())['install']}
    assert 'vanillanet-mm' in names or 'vanillanet_mm' in names, names
    assert not set(KEPT) & set(names), names
    # every requirement of every installed package is met (mmdeploy is
    # installed --no-deps on purpose: its pins would downgrade onnx)
    proc = run([sys.executable, '-m', 'pip', 'check'])
    broken = [line for line in proc.stdout.splitlines()
              if line.strip() and not line.startswith('mmdeploy ')]
    assert not broken, proc.stdout


def _wheel(tmp_path) -> Path:
    dist = tmp_path / 'dist'
    proc = run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                '--no-build-isolation', '-w', dist, ROOT])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel, ) = dist.glob('vanillanet_mm-*.whl')
    return wheel


def _overlay_venv(tmp_path) -> Path:
    """A new virtualenv that sees this one's packages (a path line, so this
    one's editable vanillanet_mm is not on its path): a user environment
    into which the wheel is installed."""
    venv = tmp_path / 'user_venv'
    run([sys.executable, '-m', 'venv', '--without-pip', venv])
    site = run([venv / 'bin' / 'python', '-c',
                'import sysconfig; print(sysconfig.get_paths()["purelib"])'])
    here = [p for p in sys.path if p.endswith('site-packages')][0]
    Path(site.stdout.strip(), 'base_env.pth').write_text(here + '\n')
    return venv


@pytest.mark.slow
@pytest.mark.compat
def test_wheel_runs_outside_the_repository(tmp_path, data):
    wheel = _wheel(tmp_path)
    files = zipfile.ZipFile(wheel).namelist()
    for name in ('vanillanet_mm_scope.pth', 'vanillanet_mm_scope.py',
                 'vanillanet_mm/.mim/model-index.yml',
                 'vanillanet_mm/.mim/configs/mask_rcnn/vanillanet_demo.py',
                 'vanillanet_mm/.mim/configs/mask_rcnn/deploy/'
                 'vanillanet_demo.py',
                 'vanillanet_mm/.mim/configs/_base_/models/vanillanet13.py',
                 'vanillanet_mm/.mim/configs/mmdeploy/'
                 'instance-seg_onnxruntime_static.py',
                 'vanillanet_mm/.mim/tools/train.py',
                 'vanillanet_mm/.mim/tools/deployment/deploy.py'):
        assert name in files, name
    venv = _overlay_venv(tmp_path)
    py = venv / 'bin' / 'python'
    proc = run([sys.executable, '-m', 'pip', '--python', py, 'install',
                '--no-deps', '--no-index', wheel])
    if proc.returncode and 'no such option: --python' in proc.stderr:
        pytest.fail('pip >= 22.3 needed for --python')
    assert proc.returncode == 0, proc.stderr[-3000:]
    outside = tmp_path / 'my_project'
    outside.mkdir()
    where = run([py, '-c', 'import vanillanet_mm; print(vanillanet_mm.'
                 '__file__)'], cwd=outside)
    installed = Path(where.stdout.strip())
    assert venv in installed.parents and ROOT not in installed.parents
    tools = installed.parent / '.mim' / 'tools'
    # (a) one training iteration of a config inheriting vanillanet_mm::
    (outside / 'my_mask_rcnn.py').write_text(
        "_base_ = 'vanillanet_mm::mask_rcnn/vanillanet_demo.py'\n"
        "train_cfg = dict(max_epochs=1, val_interval=1)\n"
        "custom_hooks = [dict(type='DeepTrainingHook', decay_epochs=1,\n"
        "                     start=1.0)]  # fine-tuning: λ = 1 throughout\n"
        "default_hooks = dict(checkpoint=dict(interval=1))\n")
    proc = run([py, tools / 'train.py', 'my_mask_rcnn.py', '--work-dir',
                'work', '--cfg-options', *data_options(data, det=True),
                'train_dataloader.dataset.indices=1',
                'val_dataloader.dataset.indices=1',
                'test_dataloader.dataset.indices=1'], cwd=outside)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpt = (outside / 'work' / 'last_checkpoint').read_text().strip()
    assert Path(ckpt).is_file()
    # (b) the deploy tool finds the packaged mmdeploy config and exports
    pytest.importorskip('mmdeploy')
    proc = run([py, tools / 'deployment' / 'deploy.py', 'my_mask_rcnn.py',
                ckpt, '--work-dir', 'deploy', '--cfg-options',
                *data_options(data, det=True)], cwd=outside)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (outside / 'deploy' / 'end2end.onnx').stat().st_size > 0


# ------------------------------------------------ mmdet's / mmseg's tools
def _own_train_and_test(package, config, det, loop, tmp_path, data):
    """The package's shipped train.py on ``config`` (custom_imports from the
    config, nothing else), then its test.py on the checkpoint."""
    wd = tmp_path / 'work'
    proc = run([sys.executable, tool_of(package, 'train.py'), config,
                '--work-dir', wd, '--cfg-options', *data_options(data, det),
                *loop])
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpt = Path((wd / 'last_checkpoint').read_text().strip())
    assert ckpt.is_file()
    assert not list(wd.glob('.*.tmp'))
    log = next(wd.glob('*/*.log')).read_text()
    assert 'AtomicCheckpointHook' in log  # the config's own hook
    proc = run([sys.executable, tool_of(package, 'test.py'), config, ckpt,
                '--work-dir', tmp_path / 'test', '--cfg-options',
                *data_options(data, det)])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert ('coco/bbox_mAP' if det else 'mIoU') in proc.stdout + proc.stderr
    return ckpt


@pytest.mark.slow
@pytest.mark.compat
def test_mmdet_own_tools_on_our_config(tmp_path, data):
    """mmdet's shipped train.py / test.py / get_flops.py / benchmark.py."""
    ckpt = _own_train_and_test(
        # one iteration (4 images, batch 4): λ pinned at 1, as fine-tuning
        'mmdet', DET_DEMO, True, ['train_cfg.max_epochs=1',
                                  'train_cfg.val_interval=1',
                                  'custom_hooks.0.start=1.0',
                                  'default_hooks.checkpoint.interval=1'],
        tmp_path, data)
    proc = run([sys.executable, tool_of('mmdet', 'analysis_tools/'
                                        'get_flops.py'), DET_DEMO,
                '--num-images', '1', '--cfg-options',
                *data_options(data, det=True)])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'Flops:' in proc.stdout and 'Params:' in proc.stdout
    # its inference task moves the model to CUDA unconditionally; without
    # a GPU, the data pipeline task of the same tool
    task = 'inference' if torch.cuda.is_available() else 'dataset'
    proc = run([sys.executable, tool_of('mmdet', 'analysis_tools/'
                                        'benchmark.py'), DET_DEMO,
                '--checkpoint', ckpt, '--task', task, '--max-iter', '4',
                '--num-warmup', '1', '--log-interval', '2',
                '--cfg-options', *data_options(data, det=True)])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'fps' in (proc.stdout + proc.stderr).lower()


@pytest.mark.slow
@pytest.mark.compat
def test_mmseg_own_tools_on_our_config(tmp_path, data):
    loop = ['train_cfg.val_interval=2', 'custom_hooks.0.decay_iters=1',
            'default_hooks.checkpoint.interval=2']
    _own_train_and_test('mmseg', SEG_DEMO, False,
                        ['train_cfg.max_iters=2', *loop], tmp_path, data)
    # its --resume: the runner checkpoint loads under torch's weights_only
    # default (the config's AtomicCheckpointHook allow-lists for the load)
    wd = tmp_path / 'work'
    proc = run([sys.executable, tool_of('mmseg', 'train.py'), SEG_DEMO,
                '--work-dir', wd, '--resume', '--cfg-options',
                *data_options(data, False), 'train_cfg.max_iters=4', *loop])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert (wd / 'iter_4.pth').is_file()


# ------------------------------------------------------------- inference
DET_KEEP_ALL = """
keep_all = dict(type='nms', iou_threshold=1.0)
model.update(test_cfg=dict(
    rpn=dict(nms_pre=10000, max_per_img=10000, nms=keep_all),
    rcnn=dict(score_thr=0.05, max_per_img=10000, nms=keep_all)))
test_pipeline = [dict(type='LoadImageFromFile'),
                 dict(type='Resize', scale=(64, 48), keep_ratio=True),
                 dict(type='PackDetInputs', meta_keys=(
                     'img_id', 'img_path', 'ori_shape', 'img_shape',
                     'scale_factor'))]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
"""


def _checkpoints(tmp_path, text, det):
    """A training-form checkpoint of a tiny user config (random weights,
    BN statistics non-trivial; detection: class 1 favoured, so every RoI is
    a detection) and its to-deploy conversion, with both configs. The
    detector keeps every anchor's box (no top-k, NMS that removes nothing;
    small images at their own size, so about a thousand): a random model's
    near-equal scores could otherwise let a 1e-7 difference pick other
    boxes."""
    if det:
        text += DET_KEEP_ALL
    cfg_path = write_config(tmp_path, text)
    model = build_model(Config.fromfile(cfg_path))
    model.init_weights()
    randomize_bn(model)
    if det:
        model.roi_head.bbox_head.fc_cls.bias.data[1] = 6.0
    meta = (dict(classes=('a', 'b', 'c')) if det else dict(
        classes=('bg', 'circle', 'triangle', 'rectangle', 'star'),
        palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                 [255, 255, 0]]))
    ckpt = tmp_path / 'train.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=meta)), ckpt)
    fused = tmp_path / 'fused.pth'
    proc = tool('model_converters/convert_checkpoint.py', 'to-deploy',
                cfg_path, ckpt, fused)
    assert proc.returncode == 0, proc.stderr[-3000:]
    deploy_cfg = write_config(tmp_path, "_base_ = './my_config.py'\n"
                              'model = dict(backbone=dict(deploy=True))\n',
                              name='my_config_deploy.py')
    return cfg_path, ckpt, deploy_cfg, fused


def _images(tmp_path, n=2):
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        cv2.circle(img, (30, 25), 12, (250, 40, 40), -1)
        cv2.imwrite(str(folder / f'img{i}.png'), img)
    return folder


@pytest.mark.parametrize('det', [True, False], ids=['mmdet', 'mmseg'])
def test_inferencers_training_form_and_fused_agree(tmp_path, det):
    from vanillanet_mm.inference import build_inferencer
    cfg, ckpt, deploy_cfg, fused = _checkpoints(
        tmp_path, DET_CFG if det else SEG_CFG, det)
    images = _images(tmp_path)
    preds = {}
    for form, (c, w) in dict(train=(cfg, ckpt),
                             fused=(deploy_cfg, fused)).items():
        inferencer = build_inferencer(c, str(w))
        assert type(inferencer).__name__ == ('DetInferencer' if det else
                                             'MMSegInferencer')
        assert inferencer.model.backbone.deploy == (form == 'fused')
        out = tmp_path / form
        result = inferencer(str(images), out_dir=str(out),
                            return_datasamples=True)
        # mmseg's returns the data samples themselves, mmdet's a dict
        preds[form] = (result['predictions'] if isinstance(result, dict)
                       else result)
        assert len(list((out / 'vis').iterdir())) == 2
    for a, b in zip(preds['train'], preds['fused']):
        if det:
            pa, pb = a.pred_instances, b.pred_instances
            assert len(pa) > 0 and len(pa) == len(pb)
            assert torch.equal(pa.labels.sort()[0], pb.labels.sort()[0])
            assert (pa.scores.sort()[0] - pb.scores.sort()[0]).abs().max() \
                <= 1e-4
            # the same boxes (order among equal scores may differ)
            dist = torch.cdist(pa.bboxes, pb.bboxes, p=float('inf'))
            assert dist.min(0)[0].max() <= 1e-2
            assert dist.min(1)[0].max() <= 1e-2
        else:
            la, lb = a.seg_logits.data, b.seg_logits.data
            assert (la - lb).abs().max() <= 1e-4 * la.abs().max()


@pytest.mark.slow
def test_infer_tool_writes_pictures(tmp_path):
    cfg, ckpt, deploy_cfg, fused = _checkpoints(tmp_path, DET_CFG, True)
    images = _images(tmp_path, n=3)
    proc = tool('infer.py', deploy_cfg, fused, images, '--out-dir',
                tmp_path / 'out')
    assert proc.returncode == 0, proc.stderr[-3000:]
    vis = sorted((tmp_path / 'out' / 'vis').iterdir())
    assert [p.stem for p in vis] == ['img0', 'img1', 'img2']
    assert cv2.imread(str(vis[0])).shape[:2] == (48, 64)
    pred = json.loads((tmp_path / 'out' / 'preds' / 'img0.json').read_text())
    assert len(pred['labels']) > 0 and set(pred['labels']) == {1}
    proc = tool('infer.py', deploy_cfg, fused, tmp_path / 'nothing',
                '--out-dir', tmp_path / 'out2')
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert 'no image or folder' in proc.stderr
    assert not os.path.exists(tmp_path / 'out2')
