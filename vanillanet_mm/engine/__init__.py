from .atomic_checkpoint_hook import (
                                     AtomicCheckpointHook,
                                     use_atomic_checkpoints,
)
from .deep_training_hook import DeepTrainingHook
from .layer_decay_optimizer_constructor import (
                                     VanillaNetLayerDecayOptimizerConstructor,
)
from .rng_state_hook import RNGStateHook
from .switch_to_deploy_hook import SwitchToDeployHook

__all__ = ['AtomicCheckpointHook', 'DeepTrainingHook', 'RNGStateHook',
           'SwitchToDeployHook', 'VanillaNetLayerDecayOptimizerConstructor',
           'use_atomic_checkpoints']
