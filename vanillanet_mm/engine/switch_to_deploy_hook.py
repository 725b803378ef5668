"""Fuse VanillaNet into its inference form before testing."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from .utils import model_roots, num_params, switch_modules


@HOOKS.register_module()
class SwitchToDeployHook(Hook):
    """Call ``switch_to_deploy()`` on every module having it, before testing.

    Runs after the checkpoint is loaded. Already fused modules are a no-op;
    a VanillaNet whose λ ≠ 1 raises (fusing would change the network).

    The EMA copy of mmengine's ``EMAHook`` is fused too, so that its
    parameter swap before testing pairs fused with fused tensors: the tested
    weights are the EMA weights, fused. This hook (priority VERY_HIGH) runs
    before ``EMAHook`` (NORMAL) in ``before_test_epoch``. No arguments.
    """

    priority = 'VERY_HIGH'

    def before_test_epoch(self, runner) -> None:
        for label, root in model_roots(runner):
            before = num_params(root)
            fused = switch_modules(root, 'switch_to_deploy', 'deploy')
            if not fused:
                print_log(f'SwitchToDeployHook: {label} already fused',
                          logger='current')
                continue
            print_log(f'SwitchToDeployHook: fused {", ".join(fused)} of '
                      f'{label}; parameters {before / 1e6:.2f}M -> '
                      f'{num_params(root) / 1e6:.2f}M', logger='current')
