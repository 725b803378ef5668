"""tools/model_converters/convert_checkpoint.py: round trips and every
failure, as a CLI."""
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from vanillanet_mm.apis import build_model
from vanillanet_mm.models import VanillaNet
from vanillanet_mm.utils.numerics import randomize_bn

from mm_configs import DET_CFG, write_config
from official_layout import official_state_dict

TOOL = str(Path(__file__).parents[2] / 'tools' / 'model_converters' /
           'convert_checkpoint.py')
ARCH = 'vanillanet_5'


def run(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _fail(proc, match):
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr, proc.stderr
    assert match in proc.stderr, proc.stderr


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    d = tmp_path_factory.mktemp('official')
    arch = VanillaNet.arch_settings[ARCH]
    sd = official_state_dict(arch, 2)
    torch.save({'model_ema': sd}, d / 'vn5.pth')
    return d / 'vn5.pth', sd


def test_from_official_round_trip(tmp_path, official):
    src, sd = official
    dst = tmp_path / 'out' / 'vn5_mm.pth'
    proc = run('from-official', src, dst, '--arch', ARCH, '--act-num', 2)
    assert proc.returncode == 0, proc.stderr
    model = VanillaNet(ARCH, act_num=2, init_cfg=dict(type='Pretrained',
                                                      checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.stages[2].act.bn.running_var,
                       sd['stages.2.act.bn.running_var'])
    assert model.act_learn == 1.0
    meta = torch.load(dst)['meta']['vanillanet_mm']
    assert meta['conversion'] == 'from-official'
    # existing destination: refused without --force, replaced with it
    _fail(run('from-official', src, dst, '--arch', ARCH, '--act-num', 2),
          'already exists; pass --force')
    assert run('from-official', src, dst, '--arch', ARCH, '--act-num', 2,
               '--force').returncode == 0


def test_from_official_failures(tmp_path, official):
    src, _ = official
    dst = tmp_path / 'x.pth'
    _fail(run('from-official', tmp_path / 'missing.pth', dst),
          'checkpoint file not found')
    _fail(run('from-official', src, dst, '--arch', 'vanillanet_6',
              '--act-num', 2), '20 missing keys: stages.3.')
    _fail(run('from-official', src, dst, '--arch', ARCH, '--act-num', 3),
          'shape mismatches')
    torch.save({'epoch': 1}, tmp_path / 'odd.pth')
    _fail(run('from-official', tmp_path / 'odd.pth', dst),
          'unknown checkpoint layout')
    assert not dst.exists()
    assert not list(tmp_path.glob('.x.pth*'))  # no temp file left behind


def _detector_ckpt(tmp_path, act_learn):
    cfg_path = write_config(tmp_path, DET_CFG)
    model = build_model(Config.fromfile(cfg_path))
    model.init_weights()
    randomize_bn(model.backbone)
    model.backbone.set_act_learn(act_learn)
    path = tmp_path / f'det_{act_learn}.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': ('a', 'b', 'c')}}}, path)
    return cfg_path, path, model


def test_to_deploy_same_predictions(tmp_path):
    from mmdet.testing import demo_mm_inputs
    cfg_path, src, model = _detector_ckpt(tmp_path, 1.0)
    dst = tmp_path / 'fused.pth'
    proc = run('to-deploy', cfg_path, src, dst)
    assert proc.returncode == 0, proc.stderr
    ckpt = torch.load(dst)
    assert ckpt['meta']['dataset_meta']['classes'] == ('a', 'b', 'c')
    assert ckpt['meta']['vanillanet_mm']['conversion'] == 'to-deploy'
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict({'model.backbone.deploy': True})
    fused = build_model(cfg)
    fused.load_state_dict(ckpt['state_dict'], strict=True)
    packed = demo_mm_inputs(1, [[3, 128, 160]], num_items=[2], num_classes=3)
    model.eval(), fused.eval()
    model.test_cfg.rcnn.score_thr = fused.test_cfg.rcnn.score_thr = 0.0
    data = model.data_preprocessor(packed)
    with torch.no_grad():
        for fa, fb in zip(model.extract_feat(data['inputs']),
                          fused.extract_feat(data['inputs'])):
            torch.testing.assert_close(fa, fb, rtol=1e-4, atol=1e-5)
        a = model(**data, mode='predict')[0].pred_instances
        b = fused(**data, mode='predict')[0].pred_instances
    # an untrained head has near-tied scores, so compare them sorted
    assert len(a) > 0 and len(a) == len(b)
    torch.testing.assert_close(a.scores.sort().values, b.scores.sort().values,
                               rtol=1e-3, atol=1e-5)


def test_to_deploy_refuses_lambda_below_one(tmp_path):
    cfg_path, src, _ = _detector_ckpt(tmp_path, 0.5)
    _fail(run('to-deploy', cfg_path, src, tmp_path / 'f.pth'),
          'needs act_learn (λ) == 1, got 0.5')
    assert not (tmp_path / 'f.pth').exists()


def test_killed_mid_write_leaves_no_partial_file(tmp_path, official):
    """SIGTERM while writing: DST is absent or the old file, never half."""
    src, _ = official
    dst = tmp_path / 'big.pth'
    dst.write_bytes(b'old')
    code = ('import sys, time, torch; sys.argv = sys.argv[:1] + '
            f'["from-official", {str(src)!r}, {str(dst)!r}, "--arch", '
            f'"{ARCH}", "--act-num", "2", "--force"]; '
            'real = torch.save\n'
            'def slow(obj, f):\n'
            '    real(obj, f); print("writing", flush=True); time.sleep(60)\n'
            'torch.save = slow\n'
            f'exec(open({TOOL!r}).read())')
    proc = subprocess.Popen([sys.executable, '-c', code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:  # mmengine logs a line before
        if line.strip() == 'writing':
            break
    tmp = list(tmp_path.glob('.big.pth.*.tmp'))
    assert tmp  # the temp file exists while writing ...
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert dst.read_bytes() == b'old'  # ... and DST was never touched
    assert not list(tmp_path.glob('.big.pth.*.tmp'))


@pytest.fixture(scope='module')
def vn9_act3(tmp_path_factory):
    """An official-layout VN9 ImageNet checkpoint with act_num 3."""
    path = tmp_path_factory.mktemp('vn9') / 'vn9_act3.pth'
    torch.manual_seed(0)
    torch.save({'model': official_state_dict(
        VanillaNet.arch_settings['vanillanet_9'], 3)}, path)
    return path


def _vn9(path, act_num, **init):
    net = VanillaNet('vanillanet_9', act_num=act_num, out_indices=(0, 3, 6),
                     init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                   **init))
    net.init_weights()
    return net.eval()


def test_act_num_conversion_is_exact(tmp_path, vn9_act3):
    dst = tmp_path / 'vn9_act4.pth'
    proc = run('from-official', vn9_act3, dst, '--arch', 'vanillanet_9',
               '--act-num', 4, '--act-num-from', 3)
    assert proc.returncode == 0, proc.stderr
    assert 'zero-padded from act_num 3' in proc.stdout
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = _vn9(vn9_act3, 3)(x)
        for net in (_vn9(dst, 4), _vn9(vn9_act3, 4, act_num_from=3)):
            assert net.stages[0].act.weight.shape[-1] == 9
            for a, b in zip(ref, net(x)):
                assert ((a - b).abs().max() / a.abs().max()).item() <= 1e-6


def test_act_num_conversion_refuses_cropping(tmp_path, official):
    src, _ = official  # act_num 2
    _fail(run('from-official', src, tmp_path / 'a.pth', '--arch', ARCH,
              '--act-num', 1, '--act-num-from', 2),
          'cropping the activation kernels changes the network')
    _fail(run('from-official', src, tmp_path / 'b.pth', '--arch', ARCH,
              '--act-num', 4, '--act-num-from', 3),
          'has act_num 2 (5x5 activation kernels), not the act_num_from=3')
    assert not list(tmp_path.iterdir())
