"""The exported model in its backend, and mmdeploy's PyTorch model with the
same rewrites run eagerly: one calling convention for both."""
import copy
from typing import Dict, List, Sequence

import torch


# --------------------------------------------------------------- the checks
class BackendModel:
    """mmdeploy's model of ``backend_files`` (its End2EndModel) on ``device``
    (ONNX Runtime: the ONNX file, CPU)."""

    def __init__(self, deploy_cfg, model_cfg, backend_files: Sequence[str],
                 device: str = 'cpu'):
        from mmdeploy.apis import build_task_processor
        task = build_task_processor(model_cfg, deploy_cfg, device)
        self.model = task.build_backend_model(
            list(backend_files),
            data_preprocessor_updater=task.update_data_preprocessor).eval()
        self.task, self.device = task, device

    def raw(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The graph's outputs by name for a preprocessed batch (on CPU)."""
        out = self.model.wrapper({'input': inputs.to(self.device)})
        return {k: v.cpu() for k, v in out.items()}


class RewrittenModel:
    """mmdeploy's PyTorch model: ``model`` under the rewrites the export used
    (its forward returns what the ONNX graph returns)."""

    def __init__(self, model, deploy_cfg):
        from mmdeploy.core import patch_model
        from mmdeploy.utils import IR, get_backend, get_ir_config
        self.backend = get_backend(deploy_cfg).value
        self.opset = get_ir_config(deploy_cfg).get('opset_version', 11)
        self.cfg = deploy_cfg
        self.model = patch_model(copy.deepcopy(model), cfg=deploy_cfg,
                                 backend=self.backend, ir=IR.ONNX)

    @torch.no_grad()
    def __call__(self, batches) -> List[List[torch.Tensor]]:
        """The outputs for each ``(inputs, data_samples)`` of ``batches``
        (one rewriter context for all: entering one costs seconds)."""
        from mmdeploy.core import RewriterContext
        from mmdeploy.utils import IR
        outputs = []
        with RewriterContext(cfg=self.cfg, backend=self.backend, ir=IR.ONNX,
                             opset=self.opset):
            for inputs, data_samples in batches:
                out = self.model(inputs, copy.deepcopy(data_samples),
                                 mode='predict')
                out = list(out) if isinstance(out, (tuple, list)) else [out]
                outputs.append([o.cpu() for o in out])
        return outputs
