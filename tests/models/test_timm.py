"""timm's own machinery on the VanillaNet classifiers: ``create_model``,
``reparameterize_model`` and ``features_only``."""
import pytest
import timm
import torch
from timm.utils import reparameterize_model
from torch import nn

from vanillanet_mm.models import Stage, VanillaNet
from vanillanet_mm.models.timm_models import checkpoint_filter_fn
from vanillanet_mm.utils.numerics import max_rel_error, randomize_bn

from conftest import small_arch
from official_layout import official_state_dict

LAMBDA_ERROR = r'act_learn \(λ\) == 1, got 0.5'


def classifier(name, **kwargs):
    model = timm.create_model(name, arch=small_arch(name), num_classes=10,
                              **kwargs).eval()
    randomize_bn(model)
    return model


def assert_fully_fused(model):
    names = [n for n, _ in model.named_modules()]
    assert model.deploy and all(
        m.deploy for m in (model.stem, *model.stages, model.head))
    assert not any(n.rsplit('.', 1)[-1] in ('conv1', 'conv2', 'fc1', 'fc2')
                   for n in names), names
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize('name', sorted(VanillaNet.arch_settings))
def test_reparameterize_model_fuses_the_whole_classifier(name):
    model = classifier(name)
    assert model.act_learn == 1.0  # the classifier's default
    x = torch.randn(2, 3, 96, 96)
    ref = model(x)
    fused = reparameterize_model(model)  # timm's, on a copy
    assert not model.deploy and hasattr(model.stem, 'conv1')  # original
    assert_fully_fused(fused)
    out = fused(x)
    assert max_rel_error(ref, out) <= 1e-5
    # exactly the deploy form: its weights load into a deploy-built model
    deploy = timm.create_model(name, arch=small_arch(name), num_classes=10,
                               deploy=True).eval()
    deploy.load_state_dict(fused.state_dict())
    assert torch.equal(deploy(x), out)


def test_reparameterize_model_refuses_lambda_not_one():
    model = classifier('vanillanet_5')
    model.set_act_learn(0.5)
    with pytest.raises(RuntimeError, match=LAMBDA_ERROR):
        reparameterize_model(model, inplace=True)
    # refused before anything was touched
    assert not model.deploy and hasattr(model.stem, 'conv1')
    assert not any(m.deploy or m.act.deploy
                   for m in (model.stem, *model.stages))
    assert not model.head.deploy and hasattr(model.head, 'fc1')


def test_stage_fused_alone_refuses_lambda_not_one():
    stage = Stage(8, 16, act_num=1, stride=2).eval()
    randomize_bn(stage)
    x = torch.randn(2, 8, 12, 12)
    stage.act_learn = 0.5
    with pytest.raises(RuntimeError, match=LAMBDA_ERROR):
        reparameterize_model(nn.Sequential(stage))
    with pytest.raises(RuntimeError, match=LAMBDA_ERROR):
        stage.switch_to_deploy()
    assert not stage.deploy
    before = stage(x)
    forced = Stage(8, 16, act_num=1, stride=2).eval()
    forced.load_state_dict(stage.state_dict())
    forced.act_learn = 0.5
    forced.switch_to_deploy(force=True)  # fuses as if λ = 1
    assert forced.deploy and max_rel_error(before, forced(x)) > 1e-3
    stage.act_learn = 1.0
    ref = stage(x)
    fused = reparameterize_model(nn.Sequential(stage))[0]
    assert fused.deploy and max_rel_error(ref, fused(x)) <= 1e-5


@pytest.mark.parametrize('act_learn', [1.0, 0.5])
def test_features_only_follows_timm_feature_info(act_learn):
    arch = small_arch('vanillanet_13')
    feats = timm.create_model('vanillanet_13', features_only=True,
                              out_indices=(0, 1, 8, 10), arch=arch).eval()
    info = feats.feature_info
    assert info.channels() == [arch['dims'][i + 1] for i in (0, 1, 8, 10)]
    assert info.reduction() == [4, 8, 16, 32]
    assert info.module_name() == ['stages.0', 'stages.1', 'stages.8',
                                  'stages.10']
    x = torch.randn(2, 3, 96, 128)
    # the same as the mmdet backbone with the same official weights (λ path
    # included)
    official = official_state_dict(arch, 3)
    feats.model.load_state_dict(checkpoint_filter_fn(official, feats.model))
    backbone = VanillaNet(arch, act_num=3, out_indices=(0, 1, 8, 10)).eval()
    backbone.load_state_dict({k: v for k, v in official.items()
                              if not k.startswith('cls')})
    for m in (feats.model, backbone):
        m.set_act_learn(act_learn)
    out = feats(x)
    assert [tuple(f.shape) for f in out] == [
        (2, c, 96 // r, 128 // r)
        for c, r in zip(info.channels(), info.reduction())]
    for a, b in zip(out, backbone(x)):
        assert torch.equal(a, b)
    if act_learn == 1.0:
        fused = reparameterize_model(feats)
        assert fused.model.deploy
        for a, b in zip(out, fused(x)):
            assert max_rel_error(a, b) <= 1e-5
    else:
        with pytest.raises(RuntimeError, match=LAMBDA_ERROR):
            reparameterize_model(feats)


def test_features_only_defaults_and_pruning():
    arch = small_arch('vanillanet_13')
    default = timm.create_model('vanillanet_13', features_only=True,
                                arch=arch)
    assert default.feature_info.out_indices == (0, 1, 8, 10)
    assert default.feature_info.reduction() == [4, 8, 16, 32]
    short = timm.create_model('vanillanet_13', features_only=True,
                              out_indices=(-11, 2), arch=arch)
    assert len(short.model.stages) == 3  # stages after the last one dropped
    assert not any(k.startswith('head.') for k in short.state_dict())
    assert [f.shape[1] for f in short(torch.randn(1, 3, 64, 64))] == \
        short.feature_info.channels() == [arch['dims'][1], arch['dims'][3]]
    vn5 = timm.create_model('vanillanet_5', features_only=True,
                            arch=small_arch('vanillanet_5'))
    assert vn5.feature_info.reduction() == [8, 16, 32]


def test_timm_knows_exactly_the_variants():
    assert set(timm.list_models('vanillanet_*')) == set(
        VanillaNet.arch_settings)


@pytest.mark.parametrize('name', sorted(VanillaNet.arch_settings))
def test_every_variant_by_name_has_the_arch_table_widths(name):
    """By name alone (no arch=): the full-width model of the table (its
    deploy form: half the weights to initialise)."""
    model = timm.create_model(name, pretrained=False, num_classes=7,
                              deploy=True).eval()
    with torch.no_grad():
        last, feats = model.forward_intermediates(torch.randn(1, 3, 32, 32))
        logits = model.forward_head(last)
    assert [f.shape[1] for f in feats] == \
        VanillaNet.arch_settings[name]['dims'][1:]
    assert logits.shape == (1, 7)
