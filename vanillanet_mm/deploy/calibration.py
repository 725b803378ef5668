"""INT8 calibration inputs: the first images of the config's training set,
prepared exactly as test images reach the exported model (the test
pipeline, then the model's data preprocessor)."""
import copy
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..utils.errors import ConfigError


def _leaves(dataset_cfg) -> Iterator[dict]:
    """The dataset configs under wrappers (Repeat, ClassBalanced: one
    ``dataset``; Concat: ``datasets``)."""
    if 'dataset' in dataset_cfg:
        yield from _leaves(dataset_cfg['dataset'])
    elif 'datasets' in dataset_cfg:
        for sub in dataset_cfg['datasets']:
            yield from _leaves(sub)
    else:
        yield dataset_cfg


def build_calibration_loader(cfg):
    """The training set (``train_dataloader.dataset`` without repeating
    wrappers) with the test pipeline, in order, one image a batch."""
    from mmengine.runner import Runner
    dataset = copy.deepcopy(cfg.train_dataloader.dataset)
    while 'dataset' in dataset:  # a repeat would only repeat the first images
        dataset = dataset['dataset']
    pipeline = next(_leaves(cfg.test_dataloader.dataset))['pipeline']
    for leaf in _leaves(dataset):
        # unserialized: mmengine's serialization fails on an empty set
        leaf.update(pipeline=copy.deepcopy(pipeline), serialize_data=False)
    loader = copy.deepcopy(cfg.test_dataloader)
    loader.update(dataset=dataset, batch_size=1, num_workers=0,
                  persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    loader = Runner.build_dataloader(loader)
    if not len(loader.dataset):
        roots = sorted({str(leaf.get('data_root', '')) + str(
            leaf.get('ann_file') or leaf.get('data_prefix', ''))
            for leaf in _leaves(dataset)})
        raise ConfigError(
            f'the training set (train_dataloader.dataset: {", ".join(roots)})'
            ' holds no images, and INT8 calibrates on its first images: '
            'point it at the training data with --cfg-options '
            'train_dataloader.dataset.data_root=PATH')
    return loader


@torch.no_grad()
def calibration_inputs(loader, data_preprocessor, num: int,
                       shape: Optional[Sequence[int]] = None
                       ) -> Tuple[List[np.ndarray], List[str]]:
    """The first ``num`` images of ``loader``
    (:func:`build_calibration_loader`) through ``data_preprocessor``, as
    float32 arrays (1, 3, H, W), and their files. ``shape`` (H, W): a static
    model's only size; another is refused."""
    inputs, files = [], []
    for i, batch in enumerate(loader):
        if i == num:
            break
        x = data_preprocessor(batch, False)['inputs']
        path = batch['data_samples'][0].img_path
        if shape is not None and tuple(x.shape[2:]) != tuple(shape):
            raise ConfigError(
                f'the ONNX model is static at {tuple(shape)} but training '
                f'image {path} is {tuple(x.shape[2:])} after the test '
                'pipeline: resize every image to one size in the test '
                'pipeline, or deploy with --dynamic (detection)')
        inputs.append(np.ascontiguousarray(x.float().cpu().numpy()))
        files.append(path)
    return inputs, files
