"""Exact resume: every rank's random number generator states in checkpoints.

MMEngine re-seeds on resume, so after it the random choices (RPN/RoI
proposal sampling, main-process augmentation, dropout) differ from the
uninterrupted run. With this hook a deterministic run resumes to the same
losses bit for bit (tests/engine/test_resume.py): it snapshots Python's,
NumPy's and torch's (CPU and CUDA) generator states of every rank after
each training iteration (one ``all_gather_object`` when distributed),
stores them in the checkpoint and restores this rank's states when
training resumes.

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
from mmengine.hooks import Hook
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


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the generator states of all ranks; restore them on resume."""

    priority = 'LOW'  # after the model's hooks, before CheckpointHook

    def __init__(self):
        self._snapshot = None
        self._loaded = None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        states = get_rng_states()
        world_size = get_dist_info()[1]
        self._snapshot = (all_gather_object(states) if world_size > 1
                          else [states])

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._snapshot is not None:
            checkpoint[KEY] = self._snapshot

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(KEY)

    def before_train(self, runner) -> None:
        """Restore when resuming (``load_from`` alone keeps the new seed)."""
        states, self._loaded = self._loaded, None
        if states is None or runner.iter == 0:
            return
        rank, world_size = get_dist_info()
        if len(states) != world_size:
            print_log(f'RNGStateHook: the checkpoint holds the generator '
                      f'states of {len(states)} ranks, this run has '
                      f'{world_size}; keeping the seeded states (the resumed '
                      'run is not bit-identical)', logger='current',
                      level=30)
            return
        set_rng_states(states[rank])
        print_log(f'RNGStateHook: restored the generator states of iteration '
                  f'{runner.iter}', logger='current')
