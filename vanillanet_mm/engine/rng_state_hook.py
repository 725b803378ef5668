"""Exact resume: every rank's random number generator states in checkpoints.

MMEngine re-seeds on resume, so after it the random choices (RPN/RoI
proposal sampling, main-process augmentation, dropout) differ from the
uninterrupted run. With this hook a deterministic run resumes to the same
losses bit for bit (tests/engine/test_resume.py): it snapshots Python's,
NumPy's and torch's (CPU and CUDA) generator states of every rank, stores
them in the checkpoint and restores this rank's states when training
resumes.

A snapshot is one ``all_gather_object`` when distributed (a pickling
collective and a host sync), and the save runs on rank 0 only, so the
snapshot is taken on all ranks beforehand, only where a checkpoint will be
written: after the iteration or epoch at which a ``CheckpointHook`` (or
``AtomicCheckpointHook``) of the runner saves, as that hook decides it
(``interval``, ``save_begin``, ``save_last``), and before a validation
whose metrics may save a best checkpoint (``save_best``). It holds until
the next training iteration starts. A save without a snapshot (another
caller of ``runner.save_checkpoint``) stores the current states of a
single process, and nothing when distributed: resuming from it keeps the
seeded states, with a warning.

Dataloader workers hold generators of their own, seeded by MMEngine when
they start. Exact therefore for epoch-based loops whose workers are not
persistent (restarted, and re-seeded, every epoch; the demo config) or
with ``num_workers=0``, and for iteration-based loops with workers (the
resumed run replays the finished iterations' data through freshly seeded
workers). With persistent workers an epoch-based resume differs in the
augmentation drawn after the checkpoint.
"""
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

KEY = 'rng_states'


def get_rng_states() -> dict:
    """The states as tensors and plain types (torch's weights_only load)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = dict(python=random.getstate(), torch=torch.get_rng_state(),
                  numpy=(name, torch.from_numpy(keys.astype(np.int64)), pos,
                         has_gauss, gauss))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states['python'])
    name, keys, pos, has_gauss, gauss = states['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos,
                         has_gauss, gauss))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


def _checkpoint_due(runner, by_epoch: bool) -> bool:
    """Whether a CheckpointHook of ``runner`` saves at the end of this
    iteration (``by_epoch=False``) or epoch, decided as the hook decides."""
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
            continue
        every, last = ((hook.every_n_epochs, hook.is_last_train_epoch)
                       if by_epoch else
                       (hook.every_n_train_iters, hook.is_last_train_iter))
        if every(runner, hook.interval, hook.save_begin) or (
                hook.save_last and last(runner)):
            return True
    return False


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the generator states of all ranks; restore them on resume."""

    priority = 'LOW'  # after the model's hooks, before CheckpointHook

    def __init__(self):
        self._snapshot = None
        self._loaded = None
        self._resuming = False

    def snapshot(self) -> None:
        """Every rank's states, now (a collective: all ranks call it)."""
        states = get_rng_states()
        world_size = get_dist_info()[1]
        self._snapshot = (all_gather_object(states) if world_size > 1
                          else [states])

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._snapshot = None  # the states move on

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if _checkpoint_due(runner, by_epoch=False):
            self.snapshot()

    def after_train_epoch(self, runner) -> None:
        if _checkpoint_due(runner, by_epoch=True):
            self.snapshot()

    def before_val_epoch(self, runner) -> None:
        """Best checkpoints are saved after validation, on its metrics."""
        if self._snapshot is None and any(
                isinstance(h, CheckpointHook) and h.save_best
                for h in runner.hooks):
            self.snapshot()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = self._snapshot
        if states is None and get_dist_info()[1] == 1:
            states = [get_rng_states()]
        if states is not None:
            checkpoint[KEY] = states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(KEY)
        self._resuming = True

    def before_train(self, runner) -> None:
        """Restore when resuming (``load_from`` alone keeps the new seed)."""
        states, self._loaded = self._loaded, None
        resuming, self._resuming = self._resuming, False
        if not resuming or runner.iter == 0:
            return
        rank, world_size = get_dist_info()
        if states is None or len(states) != world_size:
            held = ('no generator states' if states is None else
                    f'the generator states of {len(states)} ranks')
            print_log(f'RNGStateHook: the checkpoint holds {held}, this run '
                      f'has {world_size} ranks; keeping the seeded states '
                      '(the resumed run is not bit-identical)',
                      logger='current', level=30)
            return
        set_rng_states(states[rank])
        print_log(f'RNGStateHook: restored the generator states of iteration '
                  f'{runner.iter}', logger='current')
