"""tools/train.py and tools/test.py as subprocesses on demo data."""
import json
from pathlib import Path

import pytest

from vanillanet_mm.datasets import generate

from tool_helpers import data_options as _data_opts
from tool_helpers import tool

ROOT = Path(__file__).parents[2]
DET = str(ROOT / 'configs/mask_rcnn/vanillanet_demo.py')
SEG = str(ROOT / 'configs/upernet/vanillanet_demo.py')
PROFILE = 'analysis_tools/profile_train_step.py'


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    generate(str(root), num_train=8, num_val=4, size=128)
    return root


@pytest.mark.slow
@pytest.mark.compat
@pytest.mark.parametrize('det', [True, False], ids=['mask_rcnn', 'upernet'])
def test_train_then_test_and_deploy(tmp_path, data, det):
    cfg = DET if det else SEG
    loop = (['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
             'custom_hooks.0.decay_epochs=0.5'] if det else
            ['train_cfg.max_iters=4', 'train_cfg.val_interval=4',
             'custom_hooks.0.decay_iters=2',
             'default_hooks.checkpoint.interval=4'])
    loop.append('default_hooks.logger.interval=1')
    wd = tmp_path / 'train'
    proc = tool('train.py', cfg, '--work-dir', wd, '--cfg-options',
                *_data_opts(data, det), *loop)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = (wd / 'last_checkpoint').read_text().strip()
    assert Path(ckpt).exists()
    log = next(wd.glob('*/*.log')).read_text()
    assert 'act_learn: 1.0000' in log  # λ annealed to 1 within the run
    # the fused checkpoint and the deploy config (mmpretrain's layout)
    fused = tmp_path / 'fused.pth'
    proc = tool('model_converters/convert_checkpoint.py', 'to-deploy', cfg,
                ckpt, fused)
    assert proc.returncode == 0, proc.stderr[-3000:]
    deploy_cfg = str(Path(cfg).parent / 'deploy' / Path(cfg).name)
    metrics = {}
    for mode, args in (('plain', [cfg, ckpt]),
                       ('deploy', [cfg, ckpt, '--deploy']),
                       ('deploy_config', [deploy_cfg, fused])):
        out = tmp_path / mode
        proc = tool('test.py', *args, '--work-dir', out,
                    '--cfg-options', *_data_opts(data, det))
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics[mode] = json.loads((out / 'test_metrics.json').read_text())
        if mode == 'deploy':
            assert 'SwitchToDeployHook: fused backbone' in (proc.stdout +
                                                            proc.stderr)
    key = 'coco/bbox_mAP' if det else 'mIoU'
    assert key in metrics['plain']
    for mode in ('deploy', 'deploy_config'):
        for k, v in metrics['plain'].items():
            assert abs(v - metrics[mode][k]) <= 1e-3 * max(1, abs(v)), (mode,
                                                                        k)


@pytest.mark.parametrize('det', [True, False], ids=['mask_rcnn', 'upernet'])
def test_missing_dataset_is_one_clear_error(tmp_path, det):
    proc = tool('train.py', DET if det else SEG, '--work-dir', tmp_path,
                '--cfg-options', *_data_opts(tmp_path / 'nowhere', det))
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr
    assert 'dataset root' in proc.stderr and 'nowhere' in proc.stderr
    assert 'make demo' in proc.stderr


def test_annotation_file_not_json(tmp_path, data):
    import shutil
    root = tmp_path / 'copy'
    shutil.copytree(data, root)
    (root / 'annotations/instances_training.json').write_text('garbage')
    proc = tool('train.py', DET, '--work-dir', tmp_path / 'wd',
                '--cfg-options', *_data_opts(root, True))
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert 'is not JSON' in proc.stderr


@pytest.mark.parametrize('case', ['root_empty', 'annotation_missing'])
def test_dataset_root_empty_or_annotation_missing(tmp_path, data, case):
    import shutil
    root = tmp_path / 'copy'
    if case == 'root_empty':
        root.mkdir()
    else:
        shutil.copytree(data, root)
        (root / 'annotations/instances_validation.json').unlink()
    proc = tool('train.py', DET, '--work-dir', tmp_path / 'wd',
                '--cfg-options', *_data_opts(root, True))
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert 'annotation file' in proc.stderr and 'is missing' in proc.stderr
    assert 'make demo' in proc.stderr
    assert not (tmp_path / 'wd').exists()


@pytest.fixture(scope='module')
def det_checkpoints(tmp_path_factory):
    """Demo-config detector checkpoints: λ 0 / λ 1, another width, deploy."""
    import torch
    from mmengine.config import Config

    from vanillanet_mm.apis import build_model
    root = tmp_path_factory.mktemp('ckpts')

    def save(name, act_learn=1.0, **backbone):
        cfg = Config.fromfile(DET)
        cfg.model.backbone.update(backbone)
        model = build_model(cfg)
        model.backbone.set_act_learn(act_learn)
        torch.save({'state_dict': model.state_dict(), 'meta': {}},
                   root / name)
        return root / name

    # another width of the last stage only: the mismatch is in stages.3
    arch = Config.fromfile(DET).model.backbone.arch
    paths = dict(lambda0=save('lambda0.pth', 0.0),
                 lambda1=save('lambda1.pth'),
                 other=save('other.pth', arch=dict(
                     arch, dims=[*arch.dims[:-1], 2 * arch.dims[-1]])),
                 deploy=save('deploy.pth', deploy=True))
    data = paths['lambda1'].read_bytes()
    (root / 'truncated.pth').write_bytes(data[:len(data) // 2])
    (root / 'junk.pth').write_text('not a checkpoint')
    paths.update(truncated=root / 'truncated.pth', junk=root / 'junk.pth',
                 missing=root / 'missing.pth')
    return paths


@pytest.mark.parametrize('ckpt, extra, match', [
    ('missing', (), 'checkpoint file not found'),
    ('truncated', (), 'not a readable PyTorch checkpoint'),
    ('junk', (), 'not a readable PyTorch checkpoint'),
    ('other', (), 'does not match the model of this config'),
    ('deploy', (), '--cfg-options model.backbone.deploy=True'),
    ('lambda1', ('--cfg-options', 'model.backbone.deploy=True'),
     '--cfg-options model.backbone.deploy=False'),
    ('lambda0', ('--deploy', ), 'needs act_learn (λ) = 1'),
])
def test_test_tool_rejects_bad_checkpoints(tmp_path, data, det_checkpoints,
                                           ckpt, extra, match):
    args = [DET, det_checkpoints[ckpt], '--work-dir', tmp_path / 'wd',
            *extra]
    if '--cfg-options' not in extra:
        args.append('--cfg-options')
    proc = tool('test.py', *args, *_data_opts(data, True))
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert match in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / 'wd').exists()
    if ckpt == 'other':  # the mismatched keys are listed
        assert 'shape mismatches' in proc.stderr
        assert 'backbone.stages.3' in proc.stderr


@pytest.mark.slow
def test_profile_train_step(tmp_path, data):
    out = tmp_path / 'p.json'
    proc = tool(PROFILE, DET, '--steps', 2, '--warmup', 1, '--top', 5,
                '--forms', 'deep', 'shallow', '--json', out,
                '--work-dir', tmp_path, '--cfg-options',
                *_data_opts(data, True), 'train_dataloader.batch_size=2')
    assert proc.returncode == 0, proc.stderr[-3000:]
    deep, shallow = json.loads(out.read_text())
    assert (deep['form'], shallow['form']) == ('deep', 'shallow')
    # one conv-BN per stage instead of two, measured in its own process
    assert shallow['params_m'] < deep['params_m']
    for r in (deep, shallow):
        assert r['step_s'] > 0 and r['device'] == 'cpu'
        assert r['peak_mib'] >= r['before_mib'] > 0
    assert 'peak RSS' in proc.stdout and 'Self CPU time total' in proc.stdout
    bad = tool(PROFILE, DET, '--steps', 0)
    assert bad.returncode == 2 and '--steps must be >= 1' in bad.stderr
