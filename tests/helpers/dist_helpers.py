"""Code run inside the processes of tests/engine/test_dist.py.

``sync_bn_worker``: one rank of the SyncBN check (torch.multiprocessing).
``RankProbeHook``: what each rank saw while training, imported by the
training processes through ``custom_imports`` (the test puts this folder on
PYTHONPATH).
"""
import json
import os
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vanillanet_mm.engine.dist import GlooSyncBatchNorm
from vanillanet_mm.engine.utils import unwrap


def sync_bn_worker(rank, port, x, grad_out, out_file):
    """Half of ``x`` through SyncBN; saves output, grads, running stats."""
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=2)
    torch.manual_seed(0)
    bn = GlooSyncBatchNorm(x.shape[1], momentum=0.3)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.5, 0.5)
    part = x.chunk(2)[rank].clone().requires_grad_()
    y = bn(part)
    y.backward(grad_out.chunk(2)[rank])
    torch.save(dict(y=y.detach(), gx=part.grad, gw=bn.weight.grad,
                    gb=bn.bias.grad, mean=bn.running_mean,
                    var=bn.running_var), f'{out_file}.{rank}')
    # Exit without tearing the process group down: on torch 2.1 the gloo
    # group's destructor joins its worker thread while holding the GIL, and
    # a worker still releasing a tensor waits for the GIL: a deadlock.
    os._exit(0)


@HOOKS.register_module()
class RankProbeHook(Hook):
    """Write ``rank{r}.json``: λ per iteration, norm layer types, BN stats."""

    priority = 'LOWEST'

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.act_learn = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self.act_learn.append(unwrap(runner.model).backbone.act_learn)

    def after_train(self, runner) -> None:
        backbone = unwrap(runner.model).backbone
        bns = [m for m in backbone.modules() if isinstance(m, _BatchNorm)]
        record = dict(
            world_size=runner.world_size, act_learn=self.act_learn,
            norm_types=sorted({type(m).__module__ + '.' + type(m).__name__
                               for m in bns}),
            running_mean=[m.running_mean.tolist() for m in bns],
            running_var=[m.running_var.tolist() for m in bns])
        with open(osp.join(self.out_dir, f'rank{runner.rank}.json'),
                  'w') as f:
            json.dump(record, f)


def layout_rule_worker(rank, port, work_dir, checkpoint, deep_training,
                       optim_wrapper, out_file):
    """One of two gloo ranks training a TinyClassifier whose backbone is
    initialised from ``checkpoint`` (``init_cfg`` Pretrained) under DDP.

    Saves ``{'error': message}`` when the run refuses, else each backbone
    parameter's final value and whether the optimizer holds it.
    """
    from engine_helpers import TinyClassifier, make_runner
    os.environ['LOCAL_RANK'] = str(rank)  # as torchrun sets it
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=2)
    model = TinyClassifier(deep_training=deep_training, init_cfg=dict(
        type='Pretrained', checkpoint=checkpoint))
    runner = make_runner(
        work_dir, [], dict(by_epoch=True, max_epochs=2), model=model,
        optim_wrapper=optim_wrapper, launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        model_wrapper_cfg=dict(type='CPUDistributedDataParallel'))
    try:
        runner.train()
    except Exception as e:  # the refusal under test
        torch.save(dict(error=f'{type(e).__name__}: {e}',
                        iters=runner.iter), f'{out_file}.{rank}')
        os._exit(0)
    held = {id(p) for g in runner.optim_wrapper.optimizer.param_groups
            for p in g['params']}
    backbone = unwrap(runner.model).backbone
    torch.save({name: (p.detach().clone(), id(p) in held)
                for name, p in backbone.named_parameters()},
               f'{out_file}.{rank}')
    os._exit(0)  # see sync_bn_worker
