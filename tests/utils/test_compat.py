"""Features that need a newer torch than the lower bound (torch 2.1) are on
exactly where this torch has them, and off with one log line elsewhere."""
import inspect
import logging
import subprocess
import sys

import pytest
import torch

from vanillanet_mm.ops import series_act, series_act_reference
from vanillanet_mm.utils import compat
from vanillanet_mm.utils.errors import ConfigError


def test_feature_flags_follow_the_torch_version():
    major_minor = tuple(int(p) for p in torch.__version__.split('.')[:2])
    assert compat.TORCH_VERSION == major_minor
    assert compat.HAS_CUSTOM_OP == (major_minor >= (2, 4))
    assert compat.HAS_SAFE_GLOBALS == (major_minor >= (2, 4))
    has_dynamo = 'dynamo' in inspect.signature(
        torch.onnx.export).parameters
    assert compat.onnx_export_kwargs() == ({'dynamo': False} if has_dynamo
                                           else {})


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
