"""Running tools/*.py as a user would, on generated demo data."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def tool(name, *args, env=None, timeout=900):
    """``python tools/NAME ARGS`` from the repo root, output captured."""
    return subprocess.run([sys.executable, str(ROOT / 'tools' / name),
                           *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def data_options(root, det):
    """--cfg-options pointing a demo config's loaders (and, for mmdet, its
    evaluators) at the demo data set under ``root``."""
    opts = [f'{loader}.dataset.data_root={root}/' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')]
    if det:
        ann = f'{root}/annotations/instances_validation.json'
        opts += [f'val_evaluator.ann_file={ann}',
                 f'test_evaluator.ann_file={ann}']
    return opts
