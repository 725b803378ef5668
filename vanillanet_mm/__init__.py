"""VanillaNet for OpenMMLab.

Use: ``custom_imports=dict(imports=['vanillanet_mm'])``.

Importing registers the ``VanillaNet`` backbone, ``DeepTrainingHook``,
``RNGStateHook``, ``SwitchToDeployHook``, ``AtomicCheckpointHook``,
``VanillaNetLayerDecayOptimizerConstructor`` and the CPU (gloo) DDP wrapper
of :mod:`.engine.dist` in mmengine's root registries (so mmdet and mmseg
both find them), the timm classifiers ``vanillanet_5`` …
``vanillanet_13_x1_5_ada_pool``, and adds the ``vanillanet_mm::`` config
scope to mmengine (an installed package does that at interpreter start: see
``vanillanet_mm_scope``). It patches nothing of torch, mmengine, mmcv or
mmdeploy: what a call needs (the ``weights_only`` allow-list of
:mod:`.utils.compat`, the export fixes of :mod:`.deploy.runtime`) is put in
place around that call and taken off after it.
"""
import vanillanet_mm_scope  # noqa: F401  (the vanillanet_mm:: scope)

from .engine import (
    AtomicCheckpointHook,
    DeepTrainingHook,
    RNGStateHook,
    SwitchToDeployHook,
    VanillaNetLayerDecayOptimizerConstructor,
    dist,  # noqa: F401  (registers CPUDistributedDataParallel)
)
from .models import (
    VanillaNet,
    timm_models,  # noqa: F401  (registers timm entrypoints)
)

__version__ = '0.1.0'
__all__ = ['VanillaNet', 'DeepTrainingHook', 'RNGStateHook',
           'SwitchToDeployHook', 'AtomicCheckpointHook',
           'VanillaNetLayerDecayOptimizerConstructor']
