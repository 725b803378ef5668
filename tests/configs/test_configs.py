"""Every shipped config builds its model as it is (weights, λ, schedule);
loss and predict run on tiny input."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import HOOKS

from vanillanet_mm.apis import build_model
from vanillanet_mm.models import VanillaNet

from official_layout import official_state_dict

# model configs: not the _base_ fragments, not the baseline backbones
# (configs/baselines/backbones/), not mmdeploy's deploy configs
# (configs/mmdeploy/, checked in test_deploy.py)
CONFIGS = sorted(str(p) for p in (Path(__file__).parents[2] /
                                  'configs').rglob('*.py')
                 if not {'_base_', 'mmdeploy', 'backbones'} & set(p.parts))


def _det_inputs(num_classes):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(2, [[3, 128, 160]] * 2, num_items=[2, 1],
                          num_classes=num_classes, with_mask=True)


def _seg_inputs(num_classes):
    # batch 2: the PSP module's BN on 1x1 pooled maps needs > 1 value
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(128, 128),
                                        ori_shape=(128, 128)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes,
                                                    (1, 128, 128)))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 255, (3, 128, 128),
                                      dtype=torch.uint8)] * 2,
                data_samples=samples)


def _official_checkpoint(backbone, tmp_path) -> str:
    """The backbone's Pretrained checkpoint, written in the official layout
    (the real file cannot be downloaded here) under the config's entry."""
    arch = VanillaNet.arch_settings[backbone.arch]
    path = tmp_path / 'official.pth'
    torch.save({backbone.init_cfg.get('entry') or 'model':
                official_state_dict(arch, backbone.act_num)}, path)
    return str(path)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: Path(p).stem +
                         '@' + Path(p).parent.name)
def test_config_builds_and_runs(path, tmp_path):
    """Each config as it is: its backbone's init_cfg (on an official-layout
    checkpoint), its λ start value, a schedule that takes λ to its end."""
    cfg = Config.fromfile(path)
    vanilla = Path(path).parent.name != 'baselines'
    assert 'vanillanet_mm' in cfg.custom_imports['imports']
    backbone = cfg.model.backbone
    if vanilla:
        assert backbone.type == 'VanillaNet'
        hooks = [h for h in cfg.custom_hooks
                 if h['type'] == 'DeepTrainingHook']
        assert len(hooks) == 1
        hook = HOOKS.build(hooks[0])
        # the hook's own check at its worst: one iteration an epoch
        loop = cfg.train_cfg
        epoch_based = 'max_epochs' in loop
        hook.check_schedule(loop.get('max_epochs') or loop.max_iters, 1,
                            epoch_based)
    pretrained = vanilla and (backbone.get('init_cfg') or {}).get(
        'type') == 'Pretrained'
    if pretrained:
        backbone.init_cfg.checkpoint = _official_checkpoint(backbone,
                                                            tmp_path)
    is_seg = cfg.default_scope == 'mmseg'
    if is_seg:
        cfg.model.data_preprocessor.size = (128, 128)
    model = revert_sync_batchnorm(build_model(cfg))  # SyncBN needs a group
    model.init_weights()
    if pretrained:  # an official checkpoint is the λ = 1 function
        assert model.backbone.act_learn == 1.0 == hook.start
    if vanilla:
        model.backbone.set_act_learn(hook.act_learn_at(0))
    head = model.decode_head if is_seg else (
        model.roi_head.bbox_head if hasattr(model, 'roi_head') else
        model.bbox_head)
    packed = (_seg_inputs if is_seg else _det_inputs)(head.num_classes)
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(packed, False),
                      mode='predict')
    assert len(preds) == 2
