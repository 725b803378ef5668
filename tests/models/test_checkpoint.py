"""Pretrained loading in every official layout, ours, and each failure."""
import argparse

import pytest
import timm
import torch
import torch.nn.functional as F

from vanillanet_mm.models import VanillaNet
from vanillanet_mm.models.checkpoint import CheckpointError
from vanillanet_mm.utils.numerics import max_rel_error

from conftest import small_arch
from official_layout import official_state_dict

ARCH = small_arch('vanillanet_9')


def _save(tmp_path, obj, name='ckpt.pth'):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def _backbone(path, **kwargs):
    model = VanillaNet(ARCH, act_num=4, init_cfg=dict(
        type='Pretrained', checkpoint=path), **kwargs)
    model.init_weights()
    return model


@pytest.mark.parametrize('entry', ['model', 'model_ema'])
@pytest.mark.parametrize('deploy', [False, True])
def test_official_imagenet_checkpoint(tmp_path, entry, deploy):
    sd = official_state_dict(ARCH, 4, deploy=deploy)
    # official trainer checkpoints also pickle its argparse namespace
    path = _save(tmp_path, {entry: sd, 'epoch': 299,
                            'args': argparse.Namespace(lr=4e-3)})
    model = _backbone(path, deploy=deploy)
    own = model.state_dict()
    for k, v in sd.items():
        if k.startswith('cls'):
            assert k not in own  # classifier dropped on purpose
        elif k.startswith('stem.1.'):  # official deploy stem activation
            assert torch.equal(own[k], v)
        else:
            assert torch.equal(own[k], v), k
    assert model.act_learn == 1.0


def test_official_mmdet_checkpoint(tmp_path):
    sd = {f'backbone.{k}': v for k, v in official_state_dict(ARCH, 4).items()
          if not k.startswith('cls')}
    sd['neck.lateral_convs.0.conv.weight'] = torch.randn(4, 4, 1, 1)
    path = _save(tmp_path, {'state_dict': sd, 'meta': {'epoch': 12}})
    model = _backbone(path)
    assert torch.equal(model.stages[2].conv2[0].weight,
                       sd['backbone.stages.2.conv2.0.weight'])
    assert model.act_learn == 1.0


def test_own_checkpoint_keeps_lambda(tmp_path):
    src = VanillaNet(ARCH, act_num=4)
    src.set_act_learn(0.4)
    path = _save(tmp_path, {'state_dict': {f'backbone.{k}': v for k, v in
                                           src.state_dict().items()}})
    model = _backbone(path)
    assert model.act_learn == pytest.approx(0.4)
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_other_variant_lists_mismatched_keys(tmp_path):
    path = _save(tmp_path, {'model': official_state_dict(
        small_arch('vanillanet_13'), 4)})
    with pytest.raises(CheckpointError) as e:
        _backbone(path)
    msg = str(e.value)
    assert '80 unexpected keys' in msg and 'stages.10.act.weight' in msg
    assert 'shape mismatches' in msg


def test_act_num_mismatch_is_a_shape_error(tmp_path):
    path = _save(tmp_path, {'model': official_state_dict(ARCH, 3)})
    with pytest.raises(CheckpointError, match='stem2.2.weight: checkpoint'):
        _backbone(path)


@pytest.mark.parametrize('ckpt_deploy', [False, True])
def test_deploy_layout_mismatch(tmp_path, ckpt_deploy):
    path = _save(tmp_path, {'model': official_state_dict(
        ARCH, 4, deploy=ckpt_deploy)})
    with pytest.raises(CheckpointError,
                       match=f'build it with deploy={ckpt_deploy}'):
        _backbone(path, deploy=not ckpt_deploy)


def test_unreadable_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match='checkpoint file not found'):
        _backbone(str(tmp_path / 'nope.pth'))
    good = _save(tmp_path, {'model': official_state_dict(ARCH, 4)})
    data = open(good, 'rb').read()
    trunc = tmp_path / 'trunc.pth'
    trunc.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='not a readable PyTorch'):
        _backbone(str(trunc))
    junk = tmp_path / 'junk.pth'
    junk.write_text('this is not a checkpoint')
    with pytest.raises(CheckpointError, match='not a readable PyTorch'):
        _backbone(str(junk))
    with pytest.raises(CheckpointError, match='unknown checkpoint layout'):
        _backbone(_save(tmp_path, {'epoch': 3, 'optimizer': {}}, 'x.pth'))
    with pytest.raises(CheckpointError, match='unknown layout: no VanillaNet'):
        _backbone(_save(tmp_path, {'model': {'fc.weight': torch.ones(1)}},
                        'y.pth'))


@pytest.mark.parametrize('deploy', [False, True])
def test_timm_classifier_loads_official_file(tmp_path, deploy):
    arch = small_arch('vanillanet_5')
    sd = official_state_dict(arch, 3, num_classes=1000, deploy=deploy)
    path = _save(tmp_path, {'model': sd})
    model = timm.create_model('vanillanet_5', pretrained=True, deploy=deploy,
                              arch=arch,
                              pretrained_cfg_overlay=dict(file=path)).eval()
    # every official tensor (+ λ), the cfg's first conv the official one
    own = model.state_dict()
    assert len(own) == len(sd) + 1 and model.act_learn == 1.0
    assert torch.equal(own[model.pretrained_cfg['first_conv'] + '.weight'],
                       sd['stem.0.weight' if deploy else 'stem1.0.weight'])
    # the body computes what the mmengine backbone loaded from the file
    # does, the head what the official head does
    backbone = VanillaNet(arch, act_num=3, deploy=deploy, init_cfg=dict(
        type='Pretrained', checkpoint=path))
    backbone.init_weights()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert torch.equal(feats, backbone.eval()(x)[-1])
        pooled = feats.mean((2, 3), keepdim=True)
        if deploy:
            ref = F.conv2d(pooled, sd['cls.2.weight'], sd['cls.2.bias'])
        else:
            ref = F.batch_norm(
                F.conv2d(pooled, sd['cls1.2.weight'], sd['cls1.2.bias']),
                sd['cls1.3.running_mean'], sd['cls1.3.running_var'],
                sd['cls1.3.weight'], sd['cls1.3.bias'], eps=1e-6)
            ref = F.conv2d(ref, sd['cls2.0.weight'], sd['cls2.0.bias'])
        assert max_rel_error(ref.flatten(1), model(x)) < 1e-5
    if not deploy:  # the classifier fuses too
        ref = model(x)
        model.switch_to_deploy()
        assert max_rel_error(ref, model(x)) < 1e-5
    # another number of classes: body loads, head is new
    small = timm.create_model('vanillanet_5', pretrained=True, num_classes=7,
                              deploy=deploy, arch=arch,
                              pretrained_cfg_overlay=dict(file=path))
    assert small(x).shape == (2, 7)
    assert torch.equal(small.stages[1].act.weight, sd['stages.1.act.weight'])


def test_timm_classifier_refuses_the_other_layout(tmp_path):
    arch = small_arch('vanillanet_5')
    for deploy in (False, True):
        path = _save(tmp_path, {'model': official_state_dict(
            arch, 3, deploy=not deploy)}, f'{deploy}.pth')
        with pytest.raises(ValueError, match=f'create it with deploy='
                           f'{not deploy}'):
            timm.create_model('vanillanet_5', pretrained=True, arch=arch,
                              deploy=deploy,
                              pretrained_cfg_overlay=dict(file=path))
