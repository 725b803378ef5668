# Baseline for the demo: the same UperNet, data and schedule as
# configs/upernet/vanillanet_demo.py, with a ResNet-18 (residual) backbone
# trained from scratch — to compare with VanillaNet's deep training.
_base_ = '../upernet/vanillanet_demo.py'

model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=18, num_stages=4,
                  out_indices=(0, 1, 2, 3), norm_cfg=dict(type='BN',
                                                          requires_grad=True),
                  norm_eval=False, style='pytorch'),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
custom_hooks = []  # no λ to anneal
