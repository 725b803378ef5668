"""Inference on one's own images through mmdet's / mmseg's inferencers.

:func:`build_inferencer` gives ``mmdet.apis.DetInferencer`` or
``mmseg.apis.MMSegInferencer`` (chosen by the config's ``default_scope``) for
a config and checkpoint of this package: a training-form checkpoint with its
config, or a ``tools/model_converters/convert_checkpoint.py to-deploy``
checkpoint with the deploy config beside it (``configs/<task>/deploy/``).
Calling the inferencer on an image, a folder or a list of them with
``out_dir`` writes the drawn predictions to ``out_dir/vis/`` (and, for mmdet,
JSON to ``out_dir/preds/``).
"""
import os.path as osp

from mmengine.config import Config

from .apis import SUPPORTED_SCOPES, follow_merged_checkpoint
from .utils.compat import mmengine_checkpoint_objects
from .utils.errors import ConfigError, InputFileError


def build_inferencer(config: str, checkpoint: str, device: str = 'cpu'):
    """The mmdet/mmseg inferencer of ``config`` with ``checkpoint``."""
    for path in (config, checkpoint):
        if not osp.isfile(path):
            raise InputFileError(f'file not found: {path}')
    cfg = Config.fromfile(config)
    follow_merged_checkpoint(cfg, checkpoint)
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        with mmengine_checkpoint_objects():  # the inferencer loads the weights
            return DetInferencer(model=cfg, weights=checkpoint, device=device,
                                 show_progress=False)
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        with mmengine_checkpoint_objects():
            return MMSegInferencer(model=cfg, weights=checkpoint,
                                   device=device)
    raise ConfigError(f'config default_scope must be one of '
                      f'{SUPPORTED_SCOPES}, got {scope!r}')
