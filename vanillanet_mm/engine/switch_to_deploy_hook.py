"""Fuse VanillaNet into its inference form before testing."""
from mmengine.analysis import parameter_count
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from .utils import model_roots


def _num_params(model) -> int:
    return parameter_count(model)['']


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
            todo = [(name, m) for name, m in root.named_modules()
                    if hasattr(m, 'switch_to_deploy')
                    and not getattr(m, 'deploy', False)]
            if not todo:
                print_log(f'SwitchToDeployHook: {label} already fused',
                          logger='current')
                continue
            before = _num_params(root)
            fused = []
            for name, m in todo:
                if getattr(m, 'deploy', False):  # fused by its parent
                    continue
                m.switch_to_deploy()
                fused.append(name or type(m).__name__)
            print_log(f'SwitchToDeployHook: fused {", ".join(fused)} of '
                      f'{label}; parameters {before / 1e6:.2f}M -> '
                      f'{_num_params(root) / 1e6:.2f}M', logger='current')
