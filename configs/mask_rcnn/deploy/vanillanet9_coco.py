# The fused (deploy) form of ../vanillanet9_coco.py, for checkpoints written by
# `tools/model_converters/convert_checkpoint.py to-deploy` (mmpretrain's
# deploy-config layout).
_base_ = '../vanillanet9_coco.py'

model = dict(backbone=dict(deploy=True))
