"""A tiny classifier around VanillaNet, trained by a real MMEngine Runner."""
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from vanillanet_mm.models import VanillaNet

ARCH = dict(dims=[8, 8, 16, 16], strides=[1, 2, 1])


class TinyClassifier(BaseModel):

    def __init__(self, **backbone):
        super().__init__()
        self.backbone = VanillaNet(ARCH, act_num=1, **backbone)
        self.head = nn.Linear(16, 3)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.backbone(inputs)[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        if mode == 'predict':
            return [dict(logits=lg, label=lb)
                    for lg, lb in zip(logits, labels)]
        return logits


class ShapesDataset(Dataset):
    """Deterministic 32x32 images whose class is a bright quadrant."""

    def __init__(self, n=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            img = torch.rand(3, 32, 32, generator=g) * .2
            label = i % 3
            img[:, (label // 2) * 16:(label // 2) * 16 + 16,
                (label % 2) * 16:(label % 2) * 16 + 16] += 1
            self.items.append(dict(inputs=img, labels=label))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class LogitMetric(BaseMetric):
    """Accuracy and the mean of all logits (sensitive to any change)."""

    def process(self, data_batch, data_samples):
        for s in data_samples:
            self.results.append((s['logits'].double(), int(s['label'])))

    def compute_metrics(self, results):
        logits = torch.stack([r[0] for r in results])
        labels = torch.tensor([r[1] for r in results])
        return dict(acc=(logits.argmax(1) == labels).double().mean().item(),
                    mean_logit=logits.mean().item())


class RecordHook(Hook):
    """Record λ of the model (and EMA copy) and the loss, every iteration."""
    priority = 'LOWEST'

    def __init__(self):
        self.records = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        from mmengine.hooks import EMAHook
        emas = [h.ema_model.module.backbone.act_learn for h in runner.hooks
                if isinstance(h, EMAHook)]
        self.records.append(dict(
            iter=runner.iter, epoch=runner.epoch, batch_idx=batch_idx,
            act_learn=runner.model.backbone.act_learn, ema=emas,
            logged=runner.message_hub.get_scalar('train/act_learn').current(),
            loss=float(outputs['loss']),
            # the next iteration's (ParamSchedulerHook stepped before this)
            lr=runner.optim_wrapper.get_lr()['lr'][0]))


def loader(n=8, batch_size=2, seed=0):
    return dict(dataset=ShapesDataset(n, seed), batch_size=batch_size,
                num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=False),
                collate_fn=dict(type='default_collate'))


def make_runner(work_dir, hooks, train_cfg, model=None, **kwargs):
    """A Runner that trains when ``train_cfg`` is given, else only tests."""
    torch.manual_seed(0)
    train = train_cfg is not None
    optim_wrapper = kwargs.pop('optim_wrapper', dict(
        optimizer=dict(type='SGD', lr=0.05, momentum=0.9))) if train else None
    return Runner(
        model=model or TinyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=loader() if train else None,
        optim_wrapper=optim_wrapper,
        # as Runner.from_cfg (tools/train.py) keeps them
        cfg=dict(optim_wrapper=optim_wrapper,
                 model_wrapper_cfg=kwargs.pop('model_wrapper_cfg', None)),
        train_cfg=train_cfg,
        custom_hooks=hooks,
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=kwargs.pop('checkpoint', None)),
        randomness=dict(seed=0, deterministic=True),
        **kwargs)
