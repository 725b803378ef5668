"""RNGStateHook instrumented for tests/engine/test_rng_state_hook.py, and
one rank of its two-process (gloo) run."""
import os

import torch
import torch.distributed as dist
from mmengine.hooks import Hook

from vanillanet_mm.engine.rng_state_hook import (
    KEY,
    RNGStateHook,
    get_rng_states,
)


class CountingRNGStateHook(RNGStateHook):
    """Records this rank's torch generator state at each snapshot, and the
    states each save stores."""

    def __init__(self):
        super().__init__()
        self.snapshots, self.saved = [], []

    def snapshot(self) -> None:
        self.snapshots.append(torch.get_rng_state())
        super().snapshot()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        super().before_save_checkpoint(runner, checkpoint)
        self.saved.append(checkpoint.get(KEY))


class ExtraSaveHook(Hook):
    """Saves ``extra.pth`` after the first iteration, outside any
    CheckpointHook's schedule; ``states`` are rank 0's just before."""

    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if runner.iter == 0:
            self.states = get_rng_states()
            runner.save_checkpoint(runner.work_dir, 'extra.pth')


def train_counting(work_dir, train_cfg, checkpoint, extra_save=True,
                   **runner_args):
    """Train the tiny classifier with the counting hook (and the extra
    save); the hooks."""
    from engine_helpers import make_runner
    hooks = [CountingRNGStateHook()] + [ExtraSaveHook()] * extra_save
    runner = make_runner(work_dir, hooks, train_cfg, checkpoint=checkpoint,
                         **runner_args)
    torch.manual_seed(runner.rank)  # different states on every rank
    runner.train()
    return hooks


def rng_worker(rank, port, work_dir, train_cfg, checkpoint, out_file):
    """One of two gloo ranks: saves its snapshots' torch states."""
    os.environ['LOCAL_RANK'] = str(rank)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=2)
    hook, _ = train_counting(
        work_dir, train_cfg, checkpoint, launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        model_wrapper_cfg=dict(type='CPUDistributedDataParallel'))
    torch.save(hook.snapshots, f'{out_file}.{rank}')
    os._exit(0)  # see dist_helpers.sync_bn_worker
