# The fused (deploy) form of ../vanillanet13_ade20k.py, for checkpoints
# written by `tools/model_converters/convert_checkpoint.py to-deploy`
# (mmpretrain's layout of deploy configs).
_base_ = '../vanillanet13_ade20k.py'

# the weights come from the fused checkpoint (the ImageNet ones are in the
# training layout): no init_cfg
model = dict(backbone=dict(deploy=True, init_cfg=None))
