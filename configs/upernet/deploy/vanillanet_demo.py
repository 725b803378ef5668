# The fused (deploy) form of ../vanillanet_demo.py, for checkpoints written by
# `tools/model_converters/convert_checkpoint.py to-deploy` (mmpretrain's
# deploy-config layout).
_base_ = '../vanillanet_demo.py'

model = dict(backbone=dict(deploy=True))
