"""A whole fused detector/segmentor through mmdeploy to ONNX Runtime, checked.

Used by ``tools/deployment/deploy.py``. mmdeploy (the ``deploy`` extra) is
imported only in these modules and only when called, so the rest of the
package works without it.
"""
from .compare import compare_outputs, onnx_ops
from .pipeline import deploy
from .runtime import require_mmdeploy

__all__ = ['compare_outputs', 'deploy', 'onnx_ops', 'require_mmdeploy']
