"""What each torch-version gate of vanillanet_mm.utils.compat protects, on
the installed torch: the ONNX export, mmengine checkpoints under
``weights_only`` loading, the Triton operator; off with one log line
elsewhere."""
import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vanillanet_mm.ops import series_act, series_act_reference
from vanillanet_mm.utils import compat
from vanillanet_mm.utils.errors import ConfigError
from vanillanet_mm.utils.numerics import max_rel_error

ROOT = Path(__file__).parents[2]


class _NegViaSymbolic(torch.autograd.Function):
    """-x, computed as 0 - x; exported as ONNX ``Neg`` by its ``symbolic``,
    which only the TorchScript exporter calls (as for mmcv's and mmdeploy's
    ops)."""

    @staticmethod
    def forward(ctx, x):
        return torch.sub(torch.zeros_like(x), x)

    @staticmethod
    def symbolic(g, x):
        return g.op('Neg', x)


class _Tiny(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return _NegViaSymbolic.apply(self.conv(x))


def test_onnx_export_kwargs_select_the_torchscript_exporter(tmp_path):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    model = _Tiny().eval()
    x = torch.randn(2, 3, 8, 10)
    path = tmp_path / 'tiny.onnx'
    torch.onnx.export(model, (x, ), str(path), input_names=['x'],
                      output_names=['y'], **compat.onnx_export_kwargs())
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    ops = [n.op_type for n in graph.graph.node]
    # the autograd Function's symbolic, not a trace of its forward (Sub)
    assert ops == ['Conv', 'Neg'], ops
    sess = ort.InferenceSession(str(path),
                                providers=['CPUExecutionProvider'])
    (y, ) = sess.run(None, {'x': x.numpy()})
    with torch.no_grad():
        ref = model(x)
    assert max_rel_error(ref, torch.from_numpy(y)) <= 1e-5


def _message_hub():
    from mmengine.logging import MessageHub
    hub = MessageHub('compat-test-checkpoint')
    for loss in (0.5, 0.25, 0.125):
        hub.update_scalar('train/loss', loss)
    hub.update_info('iter', 3)
    return hub


def _runner_style_checkpoint(hub=None):
    """What mmengine's Runner (and the official trainer: argparse args)
    pickle into a checkpoint beside the tensors, as AtomicCheckpointHook
    hands it to torch.save."""
    hub = hub or _message_hub()
    ckpt = dict(meta=dict(epoch=1, iter=3),
                state_dict={'conv.weight': torch.ones(2, 3)},
                message_hub=hub.state_dict(),
                args=argparse.Namespace(lr=0.1, epochs=300))
    compat.weights_only_loadable(ckpt)
    return ckpt


def _check_loaded(ckpt):
    from mmengine.logging import MessageHub
    assert torch.equal(ckpt['state_dict']['conv.weight'], torch.ones(2, 3))
    assert ckpt['args'].lr == 0.1 and ckpt['meta']['iter'] == 3
    hub = MessageHub('compat-test-loaded')
    hub.load_state_dict(ckpt['message_hub'])
    loss = hub.get_scalar('train/loss')
    # the statistics methods (not pickled) are back
    assert loss.mean() == pytest.approx((0.5 + 0.25 + 0.125) / 3)
    assert loss.mean(2) == pytest.approx((0.25 + 0.125) / 2)
    assert loss.min() == 0.125 and loss.max() == 0.5
    assert loss.statistics('current') == 0.125
    assert hub.get_info('iter') == 3


def _user_safe_globals():
    return set(torch.serialization.get_safe_globals())


def test_mmengine_checkpoints_load_as_mmengine_loads_them(tmp_path):
    """mmengine 0.10.7 calls torch.load without weights_only: from torch
    2.6 on that means weights_only=True, e.g. on --resume."""
    from mmengine.runner.checkpoint import _load_checkpoint
    path = tmp_path / 'epoch_1.pth'
    torch.save(_runner_style_checkpoint(), path)
    with compat.mmengine_checkpoint_objects():
        _check_loaded(_load_checkpoint(str(path), map_location='cpu'))


def test_checkpoint_buffers_pickle_without_functions():
    """Only the checkpoint's copies of the buffers change: HistoryBuffer
    and the live MessageHub's buffers pickle as mmengine makes them."""
    import io
    import pickle

    from mmengine.logging import HistoryBuffer
    getstate = vars(HistoryBuffer)['__getstate__']
    hub = _message_hub()
    ckpt = _runner_style_checkpoint(hub)
    assert b'getattr' not in pickle.dumps(ckpt, protocol=2)
    assert vars(HistoryBuffer)['__getstate__'] is getstate
    assert b'getattr' in pickle.dumps(hub.get_scalar('train/loss'),
                                      protocol=2)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    buf.seek(0)
    _check_loaded(torch.load(buf, weights_only=False))  # the old way too


@pytest.mark.skipif(not compat.HAS_SAFE_GLOBALS,
                    reason='torch < 2.4 has no weights_only allow-list')
def test_mmengine_checkpoints_load_with_weights_only(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    torch.save(_runner_style_checkpoint(), path)
    before = _user_safe_globals()
    with compat.mmengine_checkpoint_objects():
        _check_loaded(torch.load(path, map_location='cpu', weights_only=True))
        # also after another library scoped one of those globals (timm's
        # checkpoint loader does, and removes it on exit)
        with torch.serialization.safe_globals([argparse.Namespace]):
            pass
        _check_loaded(torch.load(path, map_location='cpu', weights_only=True))
    # taken off again: exactly what was there before
    assert _user_safe_globals() == before
    # outside the context the same file is refused (no allow-list at import)
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(path, map_location='cpu', weights_only=True)
    # also after an exception inside
    with pytest.raises(ZeroDivisionError):
        with compat.mmengine_checkpoint_objects():
            assert argparse.Namespace in _user_safe_globals()
            1 / 0
    assert _user_safe_globals() == before
    # without vanillanet_mm the same file is refused
    code = (f'import torch; torch.load({str(path)!r}, map_location="cpu", '
            'weights_only=True)')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert 'HistoryBuffer' in proc.stderr, proc.stderr[-3000:]


@pytest.mark.skipif(not compat.HAS_SAFE_GLOBALS,
                    reason='torch < 2.4 has no weights_only allow-list')
def test_overlapping_contexts_keep_the_allow_list_until_the_last(tmp_path):
    """Two threads' loads overlap: the first to leave must not take the
    allow-list from the other's load; the last to leave takes it off."""
    import threading
    path = tmp_path / 'epoch_1.pth'
    torch.save(_runner_style_checkpoint(), path)
    before = _user_safe_globals()
    first_in, second_in = threading.Event(), threading.Event()

    def first():  # enters first, leaves while the second is still inside
        with compat.mmengine_checkpoint_objects():
            first_in.set()
            assert second_in.wait(60)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(60)
    with compat.mmengine_checkpoint_objects():
        second_in.set()
        thread.join()
        _check_loaded(torch.load(path, map_location='cpu', weights_only=True))
    assert _user_safe_globals() == before


def test_runner_loads_are_scoped_on_the_runner_object(tmp_path):
    """scope_runner_loads: this runner's load_checkpoint (load_from,
    resume) loads inside the context; the class is not touched."""
    class Runner:
        def load_checkpoint(self, filename, map_location=None):
            return torch.load(filename, map_location=map_location,
                              weights_only=compat.HAS_SAFE_GLOBALS)

    path = tmp_path / 'epoch_1.pth'
    torch.save(_runner_style_checkpoint(), path)
    method = vars(Runner)['load_checkpoint']
    runner, other = Runner(), Runner()
    compat.scope_runner_loads(runner)
    compat.scope_runner_loads(runner)  # once is enough
    _check_loaded(runner.load_checkpoint(str(path), map_location='cpu'))
    assert vars(Runner)['load_checkpoint'] is method
    assert 'load_checkpoint' not in vars(other)
    assert runner.load_checkpoint.__wrapped__.__func__ is method
    if compat.HAS_SAFE_GLOBALS:
        with pytest.raises(Exception, match='HistoryBuffer'):
            other.load_checkpoint(str(path), map_location='cpu')


def test_import_patches_nothing():
    """Importing the package leaves torch, mmengine and mmcv as they were:
    torch.load/save, torch's weights_only allow-list, HistoryBuffer,
    MessageHub, Runner, CheckpointLoader, torch.onnx.export, the opset-9
    symbolics, mmcv's point_sample (tests/helpers/patch_probe.py)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tests/helpers/patch_probe.py')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == []


def test_interpreter_start_imports_neither_mmengine_nor_torch(tmp_path):
    """The installed package's scope hook (vanillanet_mm_scope.pth, run at
    every interpreter start: the site directory's .pth files, as Python
    starts) imports neither mmengine nor torch."""
    site_dir = tmp_path / 'site-packages'
    site_dir.mkdir()
    shutil.copy(ROOT / 'vanillanet_mm_scope.pth', site_dir)
    code = ('import site, sys; site.addsitedir(sys.argv[1]); '
            'print(sys.modules["vanillanet_mm_scope"].__file__); '
            'print("mmengine" in sys.modules, "torch" in sys.modules)')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]))
    proc = subprocess.run([sys.executable, '-c', code, str(site_dir)],
                          capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hook, imported = proc.stdout.splitlines()
    assert Path(hook) == ROOT / 'vanillanet_mm_scope.py'
    assert imported == 'False False'


@pytest.mark.skipif(not compat.HAS_CUSTOM_OP,
                    reason='torch < 2.4: no torch.library.custom_op')
def test_the_operator_is_the_series_activation():
    pytest.importorskip('triton')  # the kernel (on a CPU: its interpreter)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 9, 11, generator=g)
    weight = torch.randn(5, 1, 5, 5, generator=g) / 5
    bias = torch.randn(5, generator=g)
    grad = torch.randn(x.shape, generator=g)
    xd = x.to(device).requires_grad_()
    out = torch.ops.vanillanet_mm.series_act(xd, weight.to(device),
                                             bias.to(device))
    (gx, ) = torch.autograd.grad(out, xd, grad.to(device))
    # the definition in float64 on the CPU (no TF32 anywhere)
    x64 = x.double().requires_grad_()
    ref = series_act_reference(x64, weight.double(), bias.double(), 2)
    (ref_gx, ) = torch.autograd.grad(ref, x64, grad.double())
    assert max_rel_error(ref, out.double().cpu()) <= 1e-5
    assert max_rel_error(ref_gx, gx.double().cpu()) <= 1e-5


def test_import_is_quiet_and_registers_the_operator_where_it_can():
    code = ('import torch, vanillanet_mm; print(hasattr(torch.ops.'
            'vanillanet_mm, "series_act"))')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(compat.HAS_CUSTOM_OP)
    assert 'is off on torch' not in proc.stderr  # nothing to say on a CPU


@pytest.mark.skipif(compat.HAS_CUSTOM_OP, reason='torch >= 2.4 has it')
def test_without_custom_op_the_pytorch_ops_run(caplog):
    x = torch.randn(1, 4, 9, 9)
    w, b = torch.randn(4, 1, 5, 5), torch.randn(4)
    assert torch.equal(series_act(x, w, b, 2),
                       series_act_reference(x, w, b, 2))
    with pytest.raises(ConfigError, match='needs torch >= 2.4'):
        series_act(x, w, b, 2, impl='triton')


def test_feature_off_logs_once(caplog):
    with caplog.at_level(logging.WARNING, logger='vanillanet_mm'):
        for _ in range(3):
            compat.feature_off('a test feature', 'the reason')
    lines = [r.getMessage() for r in caplog.records
             if 'a test feature' in r.getMessage()]
    assert lines == [f'a test feature is off on torch {torch.__version__}: '
                     'the reason']
