"""Running the tools as a user would, on generated demo data."""
import subprocess
import sys
from pathlib import Path

from vanillanet_mm.datasets import cfg_options

ROOT = Path(__file__).parents[2]
DEMO_DET = ROOT / 'configs/mask_rcnn/vanillanet_demo.py'


def tool(name, *args, env=None, timeout=900):
    """``python tools/NAME ARGS`` from the repo root, output captured (NAME
    may name a subfolder: ``deployment/deploy.py``)."""
    return subprocess.run([sys.executable, str(ROOT / 'tools' / name),
                           *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def data_options(root, det):
    """--cfg-options pointing a demo config at the demo data under ``root``
    (for mmdet, its evaluators too)."""
    return cfg_options(str(root), coco=det)


def train_args(work_dir, data, *extra, epochs=2, keep=2):
    """tools/train.py on the demo Mask R-CNN, batches of 2, a checkpoint
    each epoch, deterministic; λ reaches 1 after 2 epochs (1.5 in a
    2-epoch run, whose last λ update comes 1/4 epoch before its end)."""
    opts = data_options(data, det=True)
    opts += ['train_dataloader.batch_size=2', f'train_cfg.max_epochs={epochs}',
             f'train_cfg.val_interval={epochs + 1}',
             f'custom_hooks.0.decay_epochs={min(2, epochs - .5):g}',
             'default_hooks.logger.interval=1',
             'default_hooks.checkpoint.interval=1',
             f'default_hooks.checkpoint.max_keep_ckpts={keep}',
             'randomness.seed=0', 'randomness.deterministic=True']
    return [str(ROOT / 'tools/train.py'), str(DEMO_DET), '--work-dir',
            str(work_dir), *map(str, extra), '--cfg-options', *opts]


def load_tool(name):
    """Import ``tools/NAME`` as a module, to call its functions in-process."""
    import importlib.util
    path = ROOT / 'tools' / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
