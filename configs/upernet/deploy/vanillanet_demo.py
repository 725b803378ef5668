# The fused (deploy) form of ../vanillanet_demo.py, for checkpoints written by
# `tools/model_converters/convert_checkpoint.py to-deploy` (mmpretrain's
# deploy-config layout).
_base_ = '../vanillanet_demo.py'

# the weights come from the fused checkpoint (the ImageNet ones are in the
# training layout): no init_cfg
model = dict(backbone=dict(deploy=True, init_cfg=None))
