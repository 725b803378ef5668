"""The paper's deep training: anneal λ (``act_learn``) from 0 to 1, then
(optionally) merge each deep pair and train on the shallow network."""
import math
from typing import Optional

from mmengine.hooks import EMAHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from ..models.checkpoint import STEM_KEYS
from ..utils.errors import ConfigError
from .optimizer_rebuild import rebuild_optimizer
from .utils import (
    model_roots,
    modules_with,
    num_params,
    switch_modules,
    unwrap,
)


@HOOKS.register_module()
class DeepTrainingHook(Hook):
    """Set λ of every VanillaNet (and its EMA copy) from the training progress.

    λ = start + (end - start) · f(min(progress / decay, 1)), f(t) = t
    (``'linear'``, official) or 0.5 · (1 - cos(π t)) (``'cosine'``). Progress
    is counted in epochs (``decay_epochs``) or iterations (``decay_iters``)
    and read from the runner only, so a resumed run gets the same λ as an
    uninterrupted one. ``per_iter=True`` updates before every iteration
    (epoch progress = epoch + iter_in_epoch / len(loader)); ``per_iter=False``
    updates at each epoch start, as the official trainer. λ is logged as the
    scalar ``act_learn``.

    ``fuse_at_end=True``: once λ reaches 1 the network is linear between
    each pair's BNs, so each pair (and the stem's) is merged into one conv
    followed by the second pair's BN (:meth:`VanillaNet.switch_to_shallow`;
    the BN is kept because the merged conv still trains with batch
    statistics, and so the eval output is unchanged). The rest of the
    schedule pays for one conv per stage instead of two. The EMA copies are
    merged too, the optimizer is rebuilt for the new parameters (same
    config: layer decay, no weight decay on 1-D parameters) at the point of
    the schedule reached, and kept parameters keep their optimizer state.
    ``--resume`` of a checkpoint written after the merge replays it before
    the weights load (``load_from`` and ``init_cfg`` refuse such a
    checkpoint in a deep model: VanillaNet's layout rule).

    Before training, the hook refuses (one line naming the fix) a decay
    that the schedule's last λ update does not reach, so λ ends at ``end``
    and ``fuse_at_end`` fires; and λ < 1 on a model without deep pairs.

    Args:
        decay_epochs (float, optional): λ reaches ``end`` after this many
            epochs. Give exactly one of ``decay_epochs`` / ``decay_iters``.
        decay_iters (int, optional): λ reaches ``end`` after this many
            iterations.
        schedule (str): ``'linear'`` or ``'cosine'``. Defaults to
            ``'linear'``.
        start (float): λ at the start; 0 from scratch, 1 when fine-tuning
            official weights (the hook then only pins it). Defaults to 0.
        end (float): final λ; 1 makes the network fusable. Defaults to 1.
        per_iter (bool): update before every iteration (True) or at each
            epoch start (False, official). Defaults to True.
        fuse_at_end (bool): merge the deep pairs when λ reaches 1 and keep
            training the shallow network (needs ``end=1``). Defaults to
            False.
    """

    priority = 'ABOVE_NORMAL'  # before EMAHook and loggers

    def __init__(self, decay_epochs: Optional[float] = None,
                 decay_iters: Optional[int] = None, schedule: str = 'linear',
                 start: float = 0.0, end: float = 1.0, per_iter: bool = True,
                 fuse_at_end: bool = False):
        if (decay_epochs is None) == (decay_iters is None):
            raise ConfigError('DeepTrainingHook needs exactly one of '
                             'decay_epochs / decay_iters')
        decay = decay_epochs if decay_iters is None else decay_iters
        if decay <= 0:
            raise ConfigError(f'the λ decay length must be > 0, got {decay}')
        if schedule not in ('linear', 'cosine'):
            raise ConfigError(f"schedule must be 'linear' or 'cosine', got "
                             f'{schedule!r}')
        if fuse_at_end and end != 1:
            raise ConfigError(f'fuse_at_end needs end=1 (the pairs merge '
                             f'exactly only at λ = 1), got end={end}')
        self.fuse_at_end = fuse_at_end
        self.decay_epochs = decay_epochs
        self.decay_iters = decay_iters
        self.schedule = schedule
        self.start = start
        self.end = end
        self.per_iter = per_iter

    def _fraction(self, progress: float) -> float:
        """How far λ has come from ``start`` to ``end``, in [0, 1]."""
        t = min(max(progress / (self.decay_epochs or self.decay_iters), 0.),
                1.)
        return 0.5 * (1 - math.cos(math.pi * t)) if (
            self.schedule == 'cosine') else t

    def act_learn_at(self, progress: float) -> float:
        """λ after ``progress`` epochs or iterations (whichever decays)."""
        t = self._fraction(progress)
        return self.end if t == 1 else self.start + (self.end -
                                                     self.start) * t

    def _progress_at(self, it: int, batch_idx: int, epoch_based: bool,
                     iters_per_epoch: int) -> float:
        """The progress (in the decay's unit) before iteration ``it``, the
        ``batch_idx``-th of its epoch."""
        epoch = it // iters_per_epoch
        if self.decay_iters is not None:
            return it if self.per_iter else epoch * iters_per_epoch
        if epoch_based and not self.per_iter:
            return epoch
        if epoch_based:
            return epoch + batch_idx / iters_per_epoch
        return it / iters_per_epoch

    def _progress(self, runner, batch_idx: int) -> float:
        return self._progress_at(
            runner.iter, batch_idx,
            isinstance(runner.train_loop, EpochBasedTrainLoop),
            len(runner.train_dataloader))

    def check_schedule(self, max_iters: int, iters_per_epoch: int,
                       epoch_based: bool) -> None:
        """Refuse a schedule whose last λ update comes before λ reaches
        ``end`` (then λ would stay short of it, and ``fuse_at_end`` would
        never merge): one line naming the fix. λ pinned (``start == end``)
        needs no decay."""
        last = max_iters - 1
        if epoch_based and not self.per_iter:  # updated at epoch starts
            last -= last % iters_per_epoch
        final = self._progress_at(last, last % iters_per_epoch, epoch_based,
                                  iters_per_epoch)
        if self._fraction(final) < 1 and self.start != self.end:
            name = 'decay_epochs' if self.decay_iters is None else (
                'decay_iters')
            raise ConfigError(
                f'DeepTrainingHook: λ would end the training at '
                f'{self.act_learn_at(final):g}, not end={self.end:g}: the '
                f'last λ update of this schedule comes at {final:g} '
                f"{name.split('_')[1]}, but {name}="
                f'{self.decay_epochs or self.decay_iters:g}; set {name} <= '
                f'{final:g} or train longer')

    def _apply(self, runner, batch_idx: int = 0) -> None:
        value = self.act_learn_at(self._progress(runner, batch_idx))
        for m in modules_with(runner, 'set_act_learn'):
            m.set_act_learn(value)
        runner.message_hub.update_scalar('train/act_learn', value)
        if self.fuse_at_end and value == 1.0:
            self._switch_to_shallow(runner)

    def _switch_to_shallow(self, runner, force: bool = False) -> None:
        """Merge every deep pair (model and EMA copies), then rebuild what
        holds the old parameters: EMA averages, DDP, the optimizer."""
        merged = []
        for label, root in model_roots(runner):
            # called every iteration once λ = 1: merged models cost a walk
            if not any(getattr(m, 'deep', False) for m in root.modules()):
                continue
            before = num_params(root)
            if switch_modules(root, 'switch_to_shallow', 'deep',
                              force=force):
                merged.append(f'{label} {before / 1e6:.3f}M -> '
                              f'{num_params(root) / 1e6:.3f}M parameters')
        if not merged:
            return
        for hook in runner.hooks:
            if isinstance(hook, EMAHook) and hasattr(hook, 'ema_model'):
                ema = hook.ema_model
                ema.avg_parameters = (
                    ema.module.state_dict() if ema.update_buffers else
                    dict(ema.module.named_parameters()))
        if is_model_wrapper(runner.model):  # DDP holds the old parameters
            runner.model = runner.wrap_model(
                runner.cfg.get('model_wrapper_cfg'), unwrap(runner.model))
        rebuild_optimizer(runner)
        print_log('DeepTrainingHook: λ = 1, merged the deep pairs, training '
                  'goes on in the shallow form: ' + '; '.join(merged),
                  logger='current')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # --resume of a run this hook merged: replay the merge before the
        # runner loads the weights and the optimizer state (every other load
        # of a merged checkpoint into a deep model is refused: VanillaNet)
        key = STEM_KEYS['shallow']
        if runner._resume and any(  # as mmengine's EMAHook tells resume
                k == key or k.endswith('.' + key)
                for k in checkpoint.get('state_dict', {})):
            self._switch_to_shallow(runner, force=True)  # weights come next

    def before_train(self, runner) -> None:
        backbones = modules_with(runner, 'set_act_learn')
        if not backbones:
            raise ConfigError('DeepTrainingHook found no module with '
                              'set_act_learn() (no VanillaNet in the model)')
        epoch_based = isinstance(runner.train_loop, EpochBasedTrainLoop)
        if not self.per_iter and not epoch_based:
            raise ConfigError('DeepTrainingHook(per_iter=False) steps λ at '
                              'epoch starts: use it with an epoch-based loop')
        self.check_schedule(runner.train_loop.max_iters,
                            len(runner.train_dataloader), epoch_based)
        now = self.act_learn_at(self._progress(runner, 0))
        if now != 1 and not any(getattr(m, 'deep', False)
                                for m in backbones):
            raise ConfigError(
                f'DeepTrainingHook would set λ = {now:g}, but the VanillaNet '
                'has no deep pairs for λ to act on (built with '
                'deep_training=False or deploy=True): remove the hook, or '
                'set its start=1 to only log λ')
        self._apply(runner)

    def before_train_epoch(self, runner) -> None:
        if not self.per_iter:
            self._apply(runner)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self.per_iter:
            self._apply(runner, batch_idx)
        else:  # keep the logged scalar on every iteration
            runner.message_hub.update_scalar(
                'train/act_learn', self.act_learn_at(
                    self._progress(runner, batch_idx)))
