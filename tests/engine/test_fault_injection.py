"""kill -9 of tools/train.py, then --resume: the same weights, bit for bit.

The demo Mask R-CNN, 3 epochs of 2 iterations, a checkpoint each epoch and
``max_keep_ckpts=1`` (the demo config's). The interrupted run is killed
three times, each time resumed with ``--resume``: by SIGKILL from outside
during epoch 2; from outside again the moment a checkpoint file appears
(mid-write or just after, as the race falls); and by SIGKILL half-way
through writing a checkpoint (tests/helpers/kill_mid_write.py, no race).
The last resume finishes. With MMEngine's own CheckpointHook a kill
mid-write leaves a truncated ``epoch_N.pth`` and ``last_checkpoint`` naming
the file it had deleted already (test_save_cut_half_way); tools/train.py
saves through ``AtomicCheckpointHook``.
"""
import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend

from vanillanet_mm.datasets import generate
from vanillanet_mm.engine import use_atomic_checkpoints
from vanillanet_mm.utils.compat import mmengine_checkpoint_objects

from engine_helpers import make_runner
from tool_helpers import ROOT, train_args

EPOCHS = 3


def run(cmd, **kwargs):
    return subprocess.run([sys.executable, *map(str, cmd)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          **kwargs)


def last_iter(work_dir) -> int:
    iters = [0]
    for path in Path(work_dir).glob('*/vis_data/scalars.json'):
        for line in path.read_text().splitlines():
            try:
                iters.append(json.loads(line).get('iter', 0))
            except json.JSONDecodeError:  # being written
                pass
    return max(iters)


def load(path):
    """A runner checkpoint, loaded as --resume loads it (torch >= 2.6:
    weights_only, with mmengine's objects allow-listed)."""
    with mmengine_checkpoint_objects():
        return torch.load(path, map_location='cpu')


def resume_point(work_dir) -> Path:
    """What --resume would load; every checkpoint there must be complete."""
    for ckpt in Path(work_dir).glob('*.pth'):
        load(ckpt)  # raises if truncated
    last = Path((Path(work_dir) / 'last_checkpoint').read_text().strip())
    assert last.is_file()
    return last


def kill_when(wd, data, condition, log, *extra, poll=0.05) -> int:
    """Start tools/train.py, kill -9 it (and its workers) once
    ``condition()`` holds; the last logged iteration."""
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, *train_args(
            wd, data, *extra, epochs=EPOCHS, keep=1)], cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 600
    while not condition():
        assert proc.poll() is None, f'training ended before the kill: {log}'
        assert time.time() < deadline
        time.sleep(poll)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return last_iter(wd)


def weights(path):
    return load(path)['state_dict']


@pytest.mark.slow
def test_kill_9_then_resume_is_bit_identical(tmp_path):
    data = tmp_path / 'demo'
    generate(str(data), num_train=4, num_val=2, size=128)
    full, wd = tmp_path / 'full', tmp_path / 'killed'
    t0 = time.time()
    proc = run(train_args(full, data, epochs=EPOCHS, keep=1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    t_full = time.time() - t0

    # 1. kill -9 from outside during epoch 2 (iterations 3-4)
    killed_at = kill_when(wd, data, lambda: (wd / 'last_checkpoint').exists()
                          and last_iter(wd) >= 3, tmp_path / 'kill1.log')
    assert killed_at == 3 and resume_point(wd).name == 'epoch_1.pth'

    # 2. --resume, kill -9 from outside the moment a checkpoint file appears
    sizes = []

    def saving():
        files = [*wd.glob('.epoch_[23].pth.tmp'), *wd.glob('epoch_[23].pth')]
        sizes.extend(f.stat().st_size for f in files if f.exists())
        return bool(files)

    kill_when(wd, data, saving, tmp_path / 'kill2.log', '--resume',
              poll=0.002)
    resume_point(wd)  # whatever the moment, complete (or the previous one)

    # 3. --resume, killed half-way through writing the next checkpoint
    proc = run([ROOT / 'tests/helpers/kill_mid_write.py',
                *train_args(wd, data, '--resume', epochs=EPOCHS, keep=1)])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert len(list(wd.glob('.epoch_*.pth.tmp'))) == 1  # the cut file
    assert resume_point(wd).name in ('epoch_1.pth', 'epoch_2.pth')
    before_final = resume_point(wd).name

    # 4. --resume to the end
    proc = run(train_args(wd, data, '--resume', epochs=EPOCHS, keep=1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'resumed from the latest checkpoint {wd / before_final}.' in \
        proc.stdout
    assert not list(wd.glob('.*.tmp'))  # the stale temp file was removed
    assert sorted(p.name for p in wd.glob('*.pth')) == ['epoch_3.pth']

    ref, got = weights(full / 'epoch_3.pth'), weights(wd / 'epoch_3.pth')
    assert ref.keys() == got.keys()
    diff = max((ref[k].double() - got[k].double()).abs().max().item()
               for k in ref)
    print(f'\nkill -9 at iteration {killed_at}, at a save (file sizes seen '
          f'{sizes[-1:]} of {(wd / "epoch_3.pth").stat().st_size} B), '
          f'mid-write; 3 resumes from {before_final}: max |Δweight| = {diff} '
          f'over {len(ref)} tensors; uninterrupted run {t_full:.0f} s, whole '
          f'test {time.time() - t0:.0f} s')
    assert all(torch.equal(ref[k], got[k]) for k in ref)


class Killed(Exception):
    pass


@pytest.mark.parametrize('hook', ['CheckpointHook', 'AtomicCheckpointHook'])
def test_save_cut_half_way(tmp_path, monkeypatch, hook):
    """The second epoch's checkpoint write dies half-way (in process)."""
    put, saves = LocalBackend.put, []

    def put_then_die(self, obj, filepath):
        saves.append(filepath)
        if len(saves) == 2:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise Killed
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put_then_die)
    runner = make_runner(tmp_path, [], dict(by_epoch=True, max_epochs=2),
                         checkpoint=dict(type=hook, interval=1,
                                         max_keep_ckpts=1))
    with pytest.raises(Killed):
        runner.train()
    last = Path((tmp_path / 'last_checkpoint').read_text().strip())
    assert last.name == 'epoch_1.pth'
    if hook == 'CheckpointHook':  # MMEngine's: why tools/train.py swaps it
        assert not last.exists()  # deleted before the new one was written
        with pytest.raises(Exception):
            load(tmp_path / 'epoch_2.pth')  # truncated, real name
        return
    assert resume_point(tmp_path) == last
    assert [p.name for p in tmp_path.glob('*.pth')] == ['epoch_1.pth']
    monkeypatch.setattr(LocalBackend, 'put', put)
    resumed = make_runner(tmp_path, [], dict(by_epoch=True, max_epochs=2),
                          checkpoint=dict(type=hook, interval=1,
                                          max_keep_ckpts=1), resume=True,
                          experiment_name='resumed')
    resumed.train()
    assert resumed.epoch == 2 and not list(tmp_path.glob('.*.tmp'))
    assert [p.name for p in tmp_path.glob('*.pth')] == ['epoch_2.pth']
    assert resume_point(tmp_path).name == 'epoch_2.pth'


def test_train_tool_swaps_in_the_atomic_hook():
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(
        type='CheckpointHook', interval=1))))
    use_atomic_checkpoints(cfg)
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    custom = Config(dict(default_hooks=dict(checkpoint=dict(type='MyHook'))))
    use_atomic_checkpoints(custom)
    assert custom.default_hooks.checkpoint.type == 'MyHook'


@contextlib.contextmanager
def small_disk(path: Path, size: int):
    """A tmpfs of ``size`` bytes at ``path`` (needs root); None where it
    cannot be mounted."""
    path.mkdir()
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}',
                           'tmpfs', str(path)], capture_output=True)
    try:
        yield path if proc.returncode == 0 else None
    finally:
        if proc.returncode == 0:
            subprocess.run(['umount', str(path)], check=True)


def test_disk_full_stops_with_one_line(tmp_path, monkeypatch):
    """A checkpoint directory with room for one checkpoint but not two: the
    second save fails. The temp file is gone, last_checkpoint still names
    the first (intact) one, the run stops with one line naming the failed
    file, the space needed and the intact checkpoint; --resume then works
    once there is room."""
    hook = dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=1)
    probe = make_runner(tmp_path / 'probe', [], dict(by_epoch=True,
                                                     max_epochs=1),
                        checkpoint=hook)
    probe.train()
    size = (tmp_path / 'probe' / 'epoch_1.pth').stat().st_size
    work = tmp_path / 'work'
    with small_disk(tmp_path / 'disk', int(size * 1.5) // 4096 * 4096
                    + 4096) as disk:
        if disk is None:  # no mount here: the same failure, injected
            disk = tmp_path / 'disk'
            put = LocalBackend.put

            def put_until_full(self, obj, filepath):
                if str(filepath).endswith('epoch_2.pth.tmp'):
                    with open(filepath, 'wb') as f:
                        f.write(obj[:len(obj) // 2])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                                  str(filepath))
                return put(self, obj, filepath)

            monkeypatch.setattr(LocalBackend, 'put', put_until_full)
        runner = make_runner(work, [], dict(by_epoch=True, max_epochs=2),
                             checkpoint=dict(hook, out_dir=str(disk)))
        with pytest.raises(SystemExit) as stop:
            runner.train()
        message = str(stop.value.code)
        first, second = disk / 'work' / 'epoch_1.pth', disk / 'work' / \
            'epoch_2.pth'
        assert '\n' not in message and 'no space left' in message
        assert str(second) in message and f'{str(first)} is intact' in message
        assert re.search(r'takes about \d+(\.\d)? [KM]iB, \d+(\.\d)? [KM]iB '
                         r'is free: free at least', message), message
        assert '--resume' in message
        assert sorted(p.name for p in (disk / 'work').iterdir()) == [
            'epoch_1.pth']  # no partial temp file left taking the space
        assert (work / 'last_checkpoint').read_text().strip() == str(first)
        load(first)  # complete
        intact = shutil.copy(first, tmp_path / 'intact.pth')
    # space freed (the small disk is gone): resume from the intact one
    resumed = make_runner(work, [], dict(by_epoch=True, max_epochs=2),
                          checkpoint=hook, resume=True, load_from=str(intact),
                          experiment_name='resumed')
    resumed.train()
    assert resumed.epoch == 2 and (work / 'epoch_2.pth').is_file()
