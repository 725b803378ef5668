# The demo UperNet (make demo): the recipe of the λ ablation.
_base_ = './vanillanet_demo_1500it.py'
