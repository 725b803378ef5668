"""RNGStateHook snapshots (a collective when distributed) only where a
checkpoint is written, and every checkpoint holds every rank's states."""
import socket

import pytest
import torch
import torch.multiprocessing as mp

from vanillanet_mm.utils.compat import weights_only_loadable

from engine_helpers import LogitMetric, loader, make_runner
from rng_helpers import rng_worker, train_counting

ATOMIC, PLAIN = 'AtomicCheckpointHook', 'CheckpointHook'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def scheduled(work_dir):
    """The scheduled checkpoints in the order they were written."""
    ckpts = [torch.load(p, weights_only=False)
             for p in work_dir.glob('*.pth') if p.stem != 'extra']
    return sorted(ckpts, key=lambda c: c['meta']['iter'])


def names(work_dir):
    return sorted(p.stem for p in work_dir.glob('*.pth') if p.stem != 'extra')


# 8 images, 2 a batch: 4 iterations an epoch on one process, 2 on two
@pytest.mark.parametrize('train_cfg, checkpoint, saved', [
    (dict(by_epoch=True, max_epochs=3), dict(type=ATOMIC, interval=2),
     ['epoch_2', 'epoch_3']),  # the last one (save_last)
    (dict(by_epoch=True, max_epochs=3),
     dict(type=PLAIN, interval=2, save_begin=1, save_last=False),
     ['epoch_1', 'epoch_3']),
    (dict(by_epoch=False, max_iters=5),
     dict(type=ATOMIC, by_epoch=False, interval=2),
     ['iter_2', 'iter_4', 'iter_5']),
    (dict(by_epoch=True, max_epochs=2),  # iterations in an epoch loop
     dict(type=PLAIN, by_epoch=False, interval=3),
     ['iter_3', 'iter_6', 'iter_8']),
])
def test_one_snapshot_per_checkpoint(tmp_path, train_cfg, checkpoint, saved):
    hook, extra = train_counting(tmp_path, train_cfg, checkpoint)
    assert names(tmp_path) == saved
    assert len(hook.snapshots) == len(saved)
    for ckpt, states in zip(scheduled(tmp_path), hook.snapshots):
        assert len(ckpt['rng_states']) == 1
        assert torch.equal(ckpt['rng_states'][0]['torch'], states)
    # an unscheduled save of one process stores the states of the moment
    kept = torch.load(tmp_path / 'extra.pth', weights_only=False)
    assert torch.equal(kept['rng_states'][0]['torch'], extra.states['torch'])


@pytest.mark.parametrize('train_cfg, checkpoint, saved', [
    (dict(by_epoch=True, max_epochs=3), dict(type=ATOMIC, interval=2),
     ['epoch_2', 'epoch_3']),
    (dict(by_epoch=False, max_iters=5),
     dict(type=ATOMIC, by_epoch=False, interval=2),
     ['iter_2', 'iter_4', 'iter_5']),
])
def test_two_processes_gather_only_for_checkpoints(tmp_path, train_cfg,
                                                   checkpoint, saved):
    out = tmp_path / 'snapshots'
    mp.spawn(rng_worker, args=(_free_port(), str(tmp_path), train_cfg,
                               checkpoint, str(out)), nprocs=2)
    ranks = [torch.load(f'{out}.{r}') for r in range(2)]
    assert names(tmp_path) == saved
    assert [len(r) for r in ranks] == [len(saved)] * 2
    for i, ckpt in enumerate(scheduled(tmp_path)):
        states = ckpt['rng_states']
        assert len(states) == 2
        for rank in range(2):  # each rank's own states, at the save
            assert torch.equal(states[rank]['torch'], ranks[rank][i])
        assert not torch.equal(states[0]['torch'], states[1]['torch'])
    # an unscheduled save has no snapshot of the other rank: none stored
    assert 'rng_states' not in torch.load(tmp_path / 'extra.pth',
                                          weights_only=False)


def test_best_checkpoints_hold_the_states_before_validation(tmp_path):
    """Validation every epoch, saving the best one; the regular checkpoint
    every second epoch: a snapshot per epoch, before validation draws from
    the generators, stored by every save (the best one of epoch 1 too)."""
    hook, = train_counting(
        tmp_path, dict(by_epoch=True, max_epochs=3, val_interval=1),
        dict(type=ATOMIC, interval=2, save_best='acc', rule='greater'),
        extra_save=False, val_dataloader=loader(), val_cfg=dict(),
        val_evaluator=dict(type=LogitMetric))
    assert len(hook.snapshots) == 3
    assert len(hook.saved) >= 3  # best of epoch 1, epochs 2 and 3
    assert torch.equal(hook.saved[0][0]['torch'], hook.snapshots[0])
    for states in hook.saved:
        assert any(torch.equal(states[0]['torch'], s) for s in hook.snapshots)


def _resume_log(work_dir, ckpt):
    runner = make_runner(work_dir, [dict(type='RNGStateHook')],
                         dict(by_epoch=True, max_epochs=2),
                         checkpoint=dict(type=ATOMIC, interval=1),
                         resume=True, load_from=str(ckpt),
                         experiment_name=work_dir.name)
    runner.train()
    return next(work_dir.glob('*/*.log')).read_text()


def test_resume_restores_or_warns(tmp_path):
    train_counting(tmp_path / 'full', dict(by_epoch=True, max_epochs=2),
                   dict(type=ATOMIC, interval=1))
    ckpt = tmp_path / 'full/epoch_1.pth'
    log = _resume_log(tmp_path / 'resumed', ckpt)
    assert 'restored the generator states of iteration 4' in log
    stripped = torch.load(ckpt, weights_only=False)
    del stripped['rng_states']
    weights_only_loadable(stripped)  # saved as the runner saves
    torch.save(stripped, tmp_path / 'stripped.pth')
    log = _resume_log(tmp_path / 'warned', tmp_path / 'stripped.pth')
    assert 'the checkpoint holds no generator states' in log
    assert 'restored the generator states' not in log
