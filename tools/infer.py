"""Run a detector/segmentor over images and write drawn predictions.

  python tools/infer.py CONFIG CHECKPOINT IMAGES --out-dir DIR

IMAGES: an image file or a folder of them. CONFIG with its training-form
checkpoint, or the deploy config (configs/<task>/deploy/) with a
``convert_checkpoint.py to-deploy`` checkpoint. Pictures go to DIR/vis/,
mmdet's JSON predictions to DIR/preds/ (mmdet's DetInferencer or mmseg's
MMSegInferencer, chosen by the config's default_scope).
"""
import argparse
import os
import os.path as osp

import vanillanet_mm  # noqa: F401
from vanillanet_mm.inference import build_inferencer
from vanillanet_mm.utils.cli import run_cli
from vanillanet_mm.utils.errors import InputFileError


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('images', help='an image file or a folder of images')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--device', default='cpu')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detection: draw boxes scoring at least this')
    args = p.parse_args()
    if not osp.exists(args.images):
        raise InputFileError(f'no image or folder at {args.images}')
    inferencer = build_inferencer(args.config, args.checkpoint, args.device)
    kwargs = dict(out_dir=args.out_dir)
    if type(inferencer).__name__ == 'DetInferencer':
        kwargs.update(pred_score_thr=args.score_thr, no_save_pred=False)
    inferencer(args.images, **kwargs)
    vis = osp.join(args.out_dir, 'vis')
    print(f'wrote {len(os.listdir(vis))} pictures to {vis}')


if __name__ == '__main__':
    run_cli(main, 'infer')
