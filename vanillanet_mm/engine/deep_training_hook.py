"""The paper's deep training: anneal λ (``act_learn``) from 0 to 1."""
import math
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from ..utils.errors import ConfigError
from .utils import modules_with


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
    scalar ``act_learn``. Nothing is fused here: validation sees the deep form.

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
    """

    priority = 'ABOVE_NORMAL'  # before EMAHook and loggers

    def __init__(self, decay_epochs: Optional[float] = None,
                 decay_iters: Optional[int] = None, schedule: str = 'linear',
                 start: float = 0.0, end: float = 1.0, per_iter: bool = True):
        if (decay_epochs is None) == (decay_iters is None):
            raise ConfigError('DeepTrainingHook needs exactly one of '
                             'decay_epochs / decay_iters')
        decay = decay_epochs if decay_iters is None else decay_iters
        if decay <= 0:
            raise ConfigError(f'the λ decay length must be > 0, got {decay}')
        if schedule not in ('linear', 'cosine'):
            raise ConfigError(f"schedule must be 'linear' or 'cosine', got "
                             f'{schedule!r}')
        self.decay_epochs = decay_epochs
        self.decay_iters = decay_iters
        self.schedule = schedule
        self.start = start
        self.end = end
        self.per_iter = per_iter

    def act_learn_at(self, progress: float) -> float:
        """λ after ``progress`` epochs or iterations (whichever decays)."""
        decay = self.decay_epochs or self.decay_iters
        t = min(max(progress / decay, 0.), 1.)
        if self.schedule == 'cosine':
            t = 0.5 * (1 - math.cos(math.pi * t))
        return self.start + (self.end - self.start) * t

    def _progress(self, runner, batch_idx: int) -> float:
        if self.decay_iters is not None:
            if self.per_iter:
                return runner.iter
            return runner.epoch * len(runner.train_dataloader)
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            if self.per_iter:
                return runner.epoch + batch_idx / len(runner.train_dataloader)
            return runner.epoch
        return runner.iter / len(runner.train_dataloader)

    def _apply(self, runner, batch_idx: int = 0) -> None:
        value = self.act_learn_at(self._progress(runner, batch_idx))
        for m in modules_with(runner, 'set_act_learn'):
            m.set_act_learn(value)
        runner.message_hub.update_scalar('train/act_learn', value)

    def before_train(self, runner) -> None:
        if not modules_with(runner, 'set_act_learn'):
            raise ConfigError('DeepTrainingHook found no module with '
                               'set_act_learn() (no VanillaNet in the model)')
        if not self.per_iter and not isinstance(runner.train_loop,
                                                EpochBasedTrainLoop):
            raise ConfigError('DeepTrainingHook(per_iter=False) steps λ at '
                             'epoch starts: use it with an epoch-based loop')
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
