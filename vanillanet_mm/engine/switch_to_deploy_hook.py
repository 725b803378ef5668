"""Fuse VanillaNet into its inference form before testing."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from .utils import modules_with, unwrap


def _num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@HOOKS.register_module()
class SwitchToDeployHook(Hook):
    """Call ``switch_to_deploy()`` on every module having it, before testing.

    Runs after the checkpoint is loaded. Already fused modules are a no-op;
    a VanillaNet whose λ ≠ 1 raises (fusing would change the network).
    """

    priority = 'VERY_HIGH'

    def before_test_epoch(self, runner) -> None:
        model = unwrap(runner.model)
        todo = [m for m in modules_with(runner, 'switch_to_deploy', False)
                if not getattr(m, 'deploy', False)]
        if not todo:
            print_log('SwitchToDeployHook: model already fused',
                      logger='current')
            return
        names = {id(m): n for n, m in model.named_modules()}
        before = _num_params(model)
        fused = []
        for m in todo:
            if getattr(m, 'deploy', False):  # fused by its parent
                continue
            m.switch_to_deploy()
            fused.append(names[id(m)] or type(m).__name__)
        print_log(f'SwitchToDeployHook: fused {", ".join(fused)}; parameters '
                  f'{before / 1e6:.2f}M -> {_num_params(model) / 1e6:.2f}M',
                  logger='current')
