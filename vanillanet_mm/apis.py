"""Tool configs: mmdet or mmseg from ``default_scope``, common flags."""
import importlib
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from .engine.dist import prepare_cpu_distributed
from .utils.errors import ConfigError, InputFileError

SUPPORTED_SCOPES = ('mmdet', 'mmseg')


def register_scope(cfg: Config) -> str:
    """Register all modules of the config's codebase; return its scope."""
    scope = cfg.get('default_scope', None)
    if scope not in SUPPORTED_SCOPES:
        raise ConfigError(f'config default_scope must be one of '
                         f'{SUPPORTED_SCOPES}, got {scope!r}')
    importlib.import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=True)
    return scope


def build_model(cfg: Config):
    """The detector/segmentor of ``cfg`` (CPU, not initialised)."""
    register_scope(cfg)
    from mmengine.registry import MODELS
    return MODELS.build(cfg.model)


def follow_merged_checkpoint(cfg: Config, path: str) -> None:
    """A run with ``DeepTrainingHook(fuse_at_end=True)`` saves the merged
    (shallow) layout: to test or run it with its own training config, build
    the backbone in that layout. Any other layout mismatch stays an error
    (the layout rule: :func:`vanillanet_mm.models.checkpoint.check_layout`).
    """
    from .models.checkpoint import backbone_layout
    backbone = cfg.model.get('backbone', {})
    if (backbone.get('type') == 'VanillaNet' and not backbone.get('deploy')
            and backbone.get('deep_training', True)
            and backbone_layout(path) == 'shallow'):
        backbone.deep_training = False
        print_log(f'{path}: merged by DeepTrainingHook(fuse_at_end) -> '
                  'model.backbone.deep_training=False', logger='current')


def add_common_args(parser) -> None:
    """The flags tools/train.py and tools/test.py share with mmdet's."""
    parser.add_argument('--work-dir', help='the dir for logs, checkpoints, '
                        'metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args) -> Config:
    """Config of a tool call: overrides, scope, work dir, dist backend."""
    if not osp.isfile(args.config):
        raise InputFileError(f'config file not found: {args.config}')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    register_scope(cfg)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    prepare_cpu_distributed(cfg)
    return cfg
