"""Metrics and latency of a model on the config's test set."""
import copy
import time
from typing import Optional, Sequence

import torch

from ..utils.errors import ConfigError


def build_test_dataloader(cfg):
    """The config's test loader, one image a batch, in this process."""
    from mmengine.runner import Runner
    loader = copy.deepcopy(cfg.test_dataloader)
    loader.update(batch_size=1, num_workers=0, persistent_workers=False)
    return Runner.build_dataloader(loader)


@torch.no_grad()
def evaluate(model, loader, evaluator_cfg,
             input_shape: Optional[Sequence[int]] = None):
    """Metrics of ``model`` on ``loader`` and its ms per image (data
    preprocessing + forward + postprocessing; loading excluded).
    ``input_shape`` (H, W): a static model's only size, checked first."""
    from mmengine.evaluator import Evaluator
    evaluator = Evaluator(copy.deepcopy(evaluator_cfg))
    evaluator.dataset_meta = loader.dataset.metainfo
    times = []
    for batch in loader:
        start = time.perf_counter()
        data = model.data_preprocessor(batch, False)
        shape = tuple(data['inputs'].shape[2:])
        if input_shape is not None and shape != tuple(input_shape):
            raise ConfigError(
                f'the ONNX model is static at {tuple(input_shape)} but a test '
                f'image is {shape} after preprocessing: deploy with --dynamic')
        outputs = model(**data, mode='predict')
        times.append((time.perf_counter() - start) * 1e3)
        evaluator.process(data_samples=outputs, data_batch=batch)
    return evaluator.evaluate(len(loader.dataset)), times
