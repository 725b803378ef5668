"""Every shipped config builds its model; loss and predict run on tiny
input."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm

from vanillanet_mm.apis import build_model

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


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: Path(p).stem +
                         '@' + Path(p).parent.name)
def test_config_builds_and_runs(path):
    cfg = Config.fromfile(path)
    vanilla = Path(path).parent.name != 'baselines'
    assert 'vanillanet_mm' in cfg.custom_imports['imports']
    if vanilla:
        assert cfg.model.backbone.type == 'VanillaNet'
        assert any(h['type'] == 'DeepTrainingHook' for h in cfg.custom_hooks)
    cfg.model.backbone.init_cfg = None  # no weights can be downloaded here
    is_seg = cfg.default_scope == 'mmseg'
    if is_seg:
        cfg.model.data_preprocessor.size = (128, 128)
    model = revert_sync_batchnorm(build_model(cfg))  # SyncBN needs a group
    model.init_weights()
    if vanilla:
        model.backbone.set_act_learn(1.0)
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
