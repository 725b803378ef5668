"""Distributed runs without a GPU: MMEngine + torch.distributed over gloo.

MMEngine's ``pytorch`` launcher assumes CUDA (``init_dist`` calls
``torch.cuda.set_device``; DDP gets ``device_ids=[LOCAL_RANK]``), and torch's
``SyncBatchNorm`` refuses CPU tensors (DDP refuses it in CPU modules).
:func:`prepare_cpu_distributed` (run by tools/train.py and tools/test.py on
a machine without a GPU) joins torchrun's process group with gloo, so the
runner skips ``init_dist``, and wraps the model in
:class:`CPUDistributedDataParallel`, which swaps every ``SyncBN`` for
:class:`GlooSyncBatchNorm`. With a GPU nothing changes.
"""
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.errors import ConfigError


def prepare_cpu_distributed(cfg: Config) -> None:
    """Make ``cfg`` (with ``cfg.launcher`` set) run distributed on CPUs."""
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise ConfigError(
            f'--launcher {cfg.launcher} without a GPU: on CPUs only '
            '--launcher pytorch (torchrun, tools/dist_train.sh) is supported')
    if not dist.is_initialized():  # env:// rendezvous from torchrun
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    wrapper = dict(broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters',
                                                  False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['type'] = 'CPUDistributedDataParallel'
    cfg.model_wrapper_cfg = wrapper


class GlooSyncBatchNorm(_BatchNorm):
    """Batch norm with the batch statistics of all ranks, for CPU tensors.

    Global mean, then the global variance about it (two all-reduces: as
    exact as BN on the whole batch); autograd all-reduces the gradients
    through the statistics, as torch's CUDA SyncBatchNorm does. Outside
    training or a process group it is plain batch norm.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f'expected at least 2D input, got {x.dim()}D')

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = dist_fn.all_reduce(x.new_tensor([x.numel() / x.shape[1]]))
        mean = dist_fn.all_reduce(x.sum(dims)) / count
        centered = x - mean.view(shape)
        var = dist_fn.all_reduce(centered.square().sum(dims)) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(),
                                       count.item())
        y = centered * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor,
                              count: float) -> None:
        self.num_batches_tracked += 1
        factor = (1.0 / self.num_batches_tracked.item()
                  if self.momentum is None else self.momentum)
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(var * count / max(count - 1, 1), factor)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every torch SyncBatchNorm replaced (same state)."""
        if isinstance(module, nn.SyncBatchNorm):
            new = cls(module.num_features, module.eps, module.momentum,
                      module.affine, module.track_running_stats)
            new.load_state_dict(module.state_dict())
            new.train(module.training)
            for p_new, p in zip(new.parameters(), module.parameters()):
                p_new.requires_grad_(p.requires_grad)
            return new
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """MMEngine's DDP for a CPU module; its SyncBNs become gloo-synced."""

    def __init__(self, module: nn.Module, **kwargs):
        kwargs['device_ids'] = None
        super().__init__(module=GlooSyncBatchNorm.convert(module), **kwargs)
