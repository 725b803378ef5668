"""CheckpointHook whose checkpoints survive a kill at any moment.

MMEngine 0.10's ``CheckpointHook`` (1) deletes the oldest kept checkpoint
(``max_keep_ckpts``) *before* writing the new one, (2) writes the new one in
place, and (3) then rewrites ``last_checkpoint`` in place. ``--resume``
(``find_latest_checkpoint``) trusts ``last_checkpoint``. A ``kill -9`` in
(2) therefore leaves a truncated ``epoch_N.pth`` under its real name and, with
``max_keep_ckpts=1``, a ``last_checkpoint`` naming the checkpoint deleted in
(1): the run cannot be resumed. A kill in (3) leaves it empty.

:class:`AtomicCheckpointHook` (same arguments) writes the checkpoint to a
hidden temp file, fsyncs it and renames it to its name, then points
``last_checkpoint`` at it (also by rename), and only then deletes the
outdated one. Killed anywhere, every ``*.pth`` in the work dir is complete
and ``last_checkpoint`` names one that exists (or is absent: the first save
never finished). Leftover temp files are removed when training starts.
Other storage backends (not a local path) keep MMEngine's behaviour.

A full disk while writing removes the temp file, leaves ``last_checkpoint``
as it was and stops the run with one line (:class:`DiskFullError`: the file,
the space needed, the checkpoint that is intact); ``--resume`` continues
from that checkpoint once space is freed.

It also keeps runner checkpoints loadable by torch's ``weights_only``
``torch.load`` (the default from torch 2.6, which mmengine 0.10.7 uses): it
saves the MessageHub's HistoryBuffers without their statistics functions
(:func:`~vanillanet_mm.utils.compat.weights_only_loadable`) and, from the
start of a run, loads the runner's checkpoints (``load_from``, ``--resume``)
inside :func:`~vanillanet_mm.utils.compat.mmengine_checkpoint_objects`
(:func:`~vanillanet_mm.utils.compat.scope_runner_loads`: this runner only).

This project's configs name it in ``default_hooks`` (so mmdet's and mmseg's
own ``tools/train.py`` use it too); ``tools/train.py`` also puts it in place
of a plain ``CheckpointHook`` (:func:`use_atomic_checkpoints`).
"""
import errno
import glob
import os
import os.path as osp
import shutil

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from ..utils.compat import scope_runner_loads, weights_only_loadable
from ..utils.fileio import atomic_write_text


def _temp_name(filename: str) -> str:
    return f'.{filename}.tmp'


class DiskFullError(SystemExit):
    """Ends the run with its message as one line, under any launcher
    (mmengine's Runner and mmdet's tools print no traceback for it)."""


def _size(n: int) -> str:
    return f'{n / 2**20:.1f} MiB' if n >= 2**20 else f'{n / 2**10:.0f} KiB'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook`, crash-safe on local disks."""

    def before_run(self, runner) -> None:
        super().before_run(runner)
        scope_runner_loads(runner)  # load_or_resume comes next

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        super().before_save_checkpoint(runner, checkpoint)
        weights_only_loadable(checkpoint)

    def _atomic(self) -> bool:
        return (isinstance(self.file_backend, LocalBackend)
                and self.file_client_args is None)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._atomic() and is_main_process():
            pattern = _temp_name(self.filename_tmpl.format('*'))
            for stale in glob.glob(osp.join(self.out_dir, pattern)):
                os.remove(stale)  # a save killed half-way

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not self._atomic():
            return super()._save_checkpoint_with_step(runner, step, meta)
        # the parent's bookkeeping, but the outdated file is deleted last
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        tmp = osp.join(self.out_dir, _temp_name(filename))
        try:
            runner.save_checkpoint(
                self.out_dir, _temp_name(filename),
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args,
                **self.args)
            if not is_main_process():  # the runner saves on rank 0 only
                return
            with open(tmp, 'rb+') as f:
                os.fsync(f.fileno())
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise self._disk_full(runner, tmp) from e
        os.replace(tmp, self.last_ckpt)
        atomic_write_text(self.last_ckpt,
                          osp.join(runner.work_dir, 'last_checkpoint'))
        if outdated is not None:
            old = osp.join(self.out_dir, self.filename_tmpl.format(outdated))
            if osp.isfile(old):
                os.remove(old)


    def _disk_full(self, runner, tmp: str) -> DiskFullError:
        """Remove the partial file; say what failed, what is needed and
        which checkpoint is intact."""
        written = osp.getsize(tmp) if osp.exists(tmp) else 0
        if osp.exists(tmp):
            os.remove(tmp)
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        intact = open(pointer).read().strip() if osp.isfile(pointer) else ''
        free = shutil.disk_usage(self.out_dir).free
        if osp.isfile(intact):
            size = osp.getsize(intact)
            need = (f'a checkpoint takes about {_size(size)}, {_size(free)} '
                    f'is free: free at least {_size(max(size - free, 0))} '
                    f'more')
            kept = (f'{intact} is intact and last_checkpoint names it; '
                    f'--resume continues from it')
        else:
            need = (f'a checkpoint takes more than {_size(written)} and '
                    f'{_size(free)} is free: free more space')
            kept = 'no earlier checkpoint was written'
        return DiskFullError(
            f'AtomicCheckpointHook: error: no space left on the device of '
            f'{self.out_dir} while writing {self.last_ckpt}: {need}; {kept}')


def use_atomic_checkpoints(cfg: Config) -> None:
    """Use :class:`AtomicCheckpointHook` for the config's checkpoint hook if
    it is MMEngine's ``CheckpointHook`` (same arguments)."""
    hook = cfg.get('default_hooks', {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook',
                                                 CheckpointHook):
        hook['type'] = 'AtomicCheckpointHook'
