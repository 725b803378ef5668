"""Pick mmdet or mmseg from a config's ``default_scope`` and build from it."""
import importlib

from mmengine.config import Config

SUPPORTED_SCOPES = ('mmdet', 'mmseg')


def register_scope(cfg: Config) -> str:
    """Register all modules of the config's codebase; return its scope."""
    scope = cfg.get('default_scope', None)
    if scope not in SUPPORTED_SCOPES:
        raise ValueError(f'config default_scope must be one of '
                         f'{SUPPORTED_SCOPES}, got {scope!r}')
    importlib.import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=True)
    return scope


def build_model(cfg: Config):
    """The detector/segmentor of ``cfg`` (CPU, not initialised)."""
    register_scope(cfg)
    from mmengine.registry import MODELS
    return MODELS.build(cfg.model)
