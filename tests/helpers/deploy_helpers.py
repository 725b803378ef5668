"""tools/deployment/deploy.py in the tests: demo models with random or
briefly trained weights, and its one-line errors."""
import importlib.util
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from tool_helpers import data_options, tool

ROOT = Path(__file__).parents[2]
DET = ROOT / 'configs/mask_rcnn/vanillanet_demo.py'
SEG = ROOT / 'configs/upernet/vanillanet_demo.py'
DEPLOY = 'deployment/deploy.py'
CONVERT = 'model_converters/convert_checkpoint.py'
HAVE_MMDEPLOY = importlib.util.find_spec('mmdeploy') is not None
needs_mmdeploy = pytest.mark.skipif(
    not HAVE_MMDEPLOY, reason='mmdeploy (the deploy extra) is not installed: '
    'scripts/setup_env.sh installs it (pip install --no-deps mmdeploy==1.3.1)')


def random_checkpoint(path, config, act_learn=1.0, spread=False, **backbone):
    """The model of ``config`` (a VanillaNet in training form, or another
    backbone) with random weights and non-trivial BN statistics.
    ``spread``: every conv/linear weight ~ N(0, 1/fan_in), so scores spread
    out. (mmdet's heads start at std 0.01, and a detector trained a few
    iterations still scores its boxes almost alike: which of near-tied boxes
    survive top-k and NMS then hangs on the last float bit, in either
    runtime, and boxes cannot be compared one to one.)"""
    from vanillanet_mm.apis import build_model
    from vanillanet_mm.utils.numerics import randomize_bn
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.update(backbone)
    torch.manual_seed(0)
    model = build_model(cfg)
    for m in model.modules() if spread else ():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.normal_(m.weight, std=m.weight[0].numel() ** -0.5)
            if m.bias is not None:
                torch.nn.init.normal_(m.bias, std=0.1)
    randomize_bn(model.backbone)
    if hasattr(model.backbone, 'set_act_learn'):
        model.backbone.set_act_learn(act_learn)
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def demo_config(config, data, det, **options):
    """The demo config on the test data, as tools/ load it."""
    from vanillanet_mm.apis import register_scope
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(dict(o.split('=', 1)
                             for o in data_options(data, det)))
    cfg.merge_from_dict(options)
    register_scope(cfg)
    return cfg


def assert_one_error(proc, *words):
    """One ``deploy: error: …`` (a key list may follow, indented), no
    traceback, exit 1."""
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    err = [line for line in proc.stderr.splitlines()
           if line.startswith('deploy:')]
    assert len(err) == 1 and err[0].startswith('deploy: error: '), proc.stderr
    message = proc.stderr[proc.stderr.index(err[0]):]
    for w in words:
        assert w in message, message


def train_upernet(work_dir, data):
    """The demo UperNet trained 4 iterations (λ annealed to 1); its
    checkpoint."""
    proc = tool('train.py', SEG, '--work-dir', work_dir, '--cfg-options',
                *data_options(data, False), 'train_cfg.max_iters=4',
                'custom_hooks.0.decay_iters=2',
                'default_hooks.checkpoint.interval=4')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (Path(work_dir) / 'last_checkpoint').read_text().strip()
