# The demo UperNet (make demo): a small VanillaNet trained from scratch with
# deep training (λ 0 -> 1) on the embedded demo data, one CPU thread next to
# the Mask R-CNN demo. It is the ablation's recipe (vanillanet_demo_1500it.py)
# with the demo Mask R-CNN's wider backbone and λ = 1 from iteration 500
# (on its base recipe the ablation found the pair, not the anneal, to help).
# Seed 0, one thread next to another run: 1200 iterations, λ = 1 at 300:
# 74.3 mIoU; the wider backbone, 1500 iterations: 82.6 (README, "Demo", has
# the final figures).
_base_ = './vanillanet_demo_1500it.py'

lambda_iters = 500

backbone_arch = dict(dims=[48, 96, 160, 256, 384], strides=[1, 2, 2, 2])
model = dict(
    backbone=dict(arch=backbone_arch),
    decode_head=dict(in_channels=backbone_arch['dims'][1:]),
    auxiliary_head=dict(in_channels=backbone_arch['dims'][3]))

custom_hooks = [dict(type='DeepTrainingHook', decay_iters=lambda_iters),
                dict(type='RNGStateHook')]  # exact --resume
