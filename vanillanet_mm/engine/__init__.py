from .deep_training_hook import DeepTrainingHook
from .layer_decay_optimizer_constructor import \
    VanillaNetLayerDecayOptimizerConstructor
from .rng_state_hook import RNGStateHook
from .switch_to_deploy_hook import SwitchToDeployHook

__all__ = ['DeepTrainingHook', 'RNGStateHook', 'SwitchToDeployHook',
           'VanillaNetLayerDecayOptimizerConstructor']
