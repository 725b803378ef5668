"""Export the fused VanillaNet backbone alone to ONNX and verify it with
onnxruntime (a whole detector/segmentor: tools/deployment/deploy.py).

  python tools/deployment/export_backbone_onnx.py OUT.onnx
      [--arch vanillanet_13 --act-num 4] [--checkpoint CKPT]
      [--shape 800 1344] [--out-indices 0 1 8 10]

CKPT is any layout the backbone loads (official, mmdet, ours); without it the
weights are random (λ from --act-learn, default 1). The export is of the
fused form, so a model whose λ ≠ 1 is refused. H and W are dynamic axes.
"""
import argparse
import os

import numpy as np
import torch

import vanillanet_mm  # noqa: F401
from vanillanet_mm.deploy.backbone_onnx import export_backbone, fused_backbone
from vanillanet_mm.models import VanillaNet
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.errors import OutputExistsError


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('out')
    p.add_argument('--arch', default='vanillanet_13',
                   choices=sorted(VanillaNet.arch_settings))
    p.add_argument('--act-num', type=int, default=4)
    p.add_argument('--out-indices', type=int, nargs='+', default=None)
    p.add_argument('--checkpoint')
    p.add_argument('--act-learn', type=float, default=1.0,
                   help='λ of a randomly initialised model')
    p.add_argument('--shape', type=int, nargs=2, default=(800, 1344))
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--force', action='store_true')
    args = p.parse_args()
    if os.path.exists(args.out) and not args.force:
        raise OutputExistsError(f'{args.out} already exists; pass --force')
    model = fused_backbone(args.arch, args.act_num, args.out_indices,
                           args.checkpoint, act_learn=args.act_learn)

    errs = []

    def check(path):  # on the written file, before it replaces args.out
        errs.append(verify(model, path, args.shape))
        if errs[0] > 1e-4:
            raise RuntimeError(f'onnxruntime output differs from PyTorch: '
                               f'max relative error {errs[0]:.2e} > 1e-4')
    export_backbone(model, args.out, args.shape, args.opset, check=check)
    print(f'wrote {args.out} (fused {args.arch}, act_num {args.act_num}); '
          f'onnxruntime vs PyTorch max relative error {errs[0]:.2e}')


def verify(model, path, shape) -> float:
    """Max relative error of onnxruntime vs PyTorch, on two input sizes."""
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    err = 0.
    for h, w in (shape, (shape[0] + 32, shape[1] - 32)):
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            ref = model(x)
        got = sess.run(None, {'input': x.numpy()})
        for a, b in zip(ref, got):
            a = a.numpy()
            err = max(err, float(np.abs(a - b).max() / np.abs(a).max()))
    return err


if __name__ == '__main__':
    run_cli(main, 'export_backbone_onnx')
