# The demo Mask R-CNN (make demo): the recipe of the λ ablation.
_base_ = './vanillanet_demo_13e.py'
