"""Fail fast, with one clear message, when a config's dataset is missing."""
import os
import os.path as osp
from typing import Iterator

from mmengine.config import Config

from .errors import InputFileError

DEMO_HINT = ('put the dataset there, point the config at it with '
             '--cfg-options <loader>.dataset.data_root=PATH, or try the '
             'embedded demo data (make demo)')


class DatasetNotFoundError(InputFileError):
    """A dataset path of the config does not exist or is unusable."""


def _datasets(cfg: Config) -> Iterator[tuple]:
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = (cfg.get(loader) or {}).get('dataset')
        while ds is not None and 'dataset' in ds:  # Repeat/ClassBalanced
            ds = ds['dataset']
        for sub in (ds.get('datasets', [ds]) if ds else []):
            yield loader, sub


def check_dataset(cfg: Config, loaders=('train_dataloader', 'val_dataloader',
                                        'test_dataloader')) -> None:
    """Check annotation files and image/label folders of the given loaders."""
    for loader, ds in _datasets(cfg):
        if loader not in loaders:
            continue
        root = ds.get('data_root') or ''
        layout = (f'{loader}.dataset expects data_root={root!r} with '
                  f"ann_file={ds.get('ann_file')!r} and data_prefix="
                  f"{dict(ds.get('data_prefix') or {})}")
        if root and not osp.isdir(root):
            raise DatasetNotFoundError(
                f'dataset root {root} does not exist. {layout}; {DEMO_HINT}')
        ann = ds.get('ann_file')
        if ann:
            path = osp.join(root, ann)
            if not osp.isfile(path):
                raise DatasetNotFoundError(
                    f'annotation file {path} is missing. {layout}; '
                    f'{DEMO_HINT}')
            if path.endswith('.json'):
                with open(path, 'rb') as f:
                    head = f.read(256).lstrip()
                if not head.startswith((b'{', b'[')):
                    raise DatasetNotFoundError(
                        f'annotation file {path} is not JSON. {layout}')
        for key, folder in dict(ds.get('data_prefix') or {}).items():
            path = osp.join(root, folder)
            if not osp.isdir(path) or not _non_empty(path):
                raise DatasetNotFoundError(
                    f'{key} folder {path} is missing or empty. {layout}; '
                    f'{DEMO_HINT}')


def _non_empty(path: str) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is not None
