"""The embedded demo dataset: coloured shapes on noisy, textured backgrounds.

Deterministic (seeded) and written under ``data/demo/``::

    images/{training,validation}/NNNNN.png        RGB images
    annotations/{training,validation}/NNNNN.png   semantic labels (ADE layout)
    annotations/instances_{training,validation}.json   COCO instances (RLE)
    manifest.json                                  parameters and counts

Semantic labels: 0 = background, k = class k (1 circle, 2 triangle,
3 rectangle, 4 star); so mmseg uses ``reduce_zero_label=False`` with the
5 classes of :data:`SEG_CLASSES` (ADE20K itself uses True: its 0 is "other").
COCO category ids are 1..4 in the same order. Masks are the visible parts
after occlusion, stored as RLE; boxes and areas come from those masks.

    python -m vanillanet_mm.datasets.synthetic --out data/demo
"""
import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..utils.fileio import atomic_write_json

CLASSES = ('circle', 'triangle', 'rectangle', 'star')
SEG_CLASSES = ('background', ) + CLASSES
SPLITS = ('training', 'validation')
VERSION = 2  # 2: occlusion limited, minimum colour contrast
MAX_OCCLUSION = 0.25   # a new shape hides at most this of an earlier one
MIN_CONTRAST = 60.0    # RGB distance of a shape to the background under it
PLACEMENT_TRIES = 30   # re-draws before the last draw is kept anyway


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency colour texture plus pixel noise."""
    coarse = rng.uniform(40, 200, (4, 4, 3)).astype(np.float32)
    bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    stripes = np.sin(np.arange(size) * rng.uniform(.05, .3) +
                     rng.uniform(0, 6))[None, :, None] * rng.uniform(0, 25)
    bg = bg + stripes + rng.normal(0, 12, (size, size, 3))
    return bg


def _polygon(rng: np.random.Generator, cls: int, cx, cy, r) -> np.ndarray:
    angle = rng.uniform(0, 2 * math.pi)
    if cls == 0:  # circle
        n, radii = 48, [r]
    elif cls == 1:  # triangle
        n, radii = 3, [r]
    elif cls == 2:  # rectangle, random aspect
        a = rng.uniform(.5, 1.)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]]) * r
        c, s = math.cos(angle), math.sin(angle)
        return pts @ np.array([[c, s], [-s, c]]) + [cx, cy]
    else:  # five-pointed star
        n, radii = 10, [r, r * .45]
    t = angle + np.arange(n) * 2 * math.pi / n
    rad = np.array([radii[i % len(radii)] for i in range(n)])
    return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)


def _place(rng: np.random.Generator, cls: int, size: int,
           inst: np.ndarray, num_placed: int) -> np.ndarray:
    """A shape mask that hides at most MAX_OCCLUSION of any earlier shape.

    Shapes still overlap; an instance that is mostly hidden (its label
    kept, its evidence gone) only teaches the detector to guess.
    """
    for _ in range(PLACEMENT_TRIES):
        r = rng.uniform(.08, .2) * size
        cx, cy = rng.uniform(r, size - r, 2)
        poly = np.round(_polygon(rng, cls, cx, cy, r) * 8).astype(np.int32)
        m = np.zeros((size, size), np.uint8)
        cv2.fillPoly(m, [poly], 1, lineType=cv2.LINE_8, shift=3)
        visible = np.bincount(inst.ravel(), minlength=num_placed + 1)[1:]
        hidden = np.bincount(inst[m > 0], minlength=num_placed + 1)[1:]
        if np.all(hidden <= MAX_OCCLUSION * visible):
            break
    return m


def _colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour at least MIN_CONTRAST (RGB distance) from the
    mean background under the shape."""
    for _ in range(PLACEMENT_TRIES):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - background) >= MIN_CONTRAST:
            break
    return colour


def render(rng: np.random.Generator, size: int, max_shapes: int):
    """One image, its per-pixel class map and visible instance masks."""
    img = _background(rng, size)
    sem = np.zeros((size, size), np.uint8)
    inst = np.zeros((size, size), np.int32)  # 0 = none, k = k-th shape
    classes = []
    for k in range(1, int(rng.integers(2, max_shapes + 1)) + 1):
        cls = int(rng.integers(0, len(CLASSES)))
        m = _place(rng, cls, size, inst, k - 1)
        colour = _colour(rng, img[m > 0].mean(0))
        shade = np.linspace(.8, 1.2, size)[None, :, None]
        img = np.where(m[..., None] > 0, colour * shade, img)
        sem[m > 0] = cls + 1
        inst[m > 0] = k
        classes.append(cls)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    masks = [(inst == k + 1, cls) for k, cls in enumerate(classes)]
    return img, sem, masks


def _coco_annotations(masks, image_id, next_id, min_area):
    anns = []
    for m, cls in masks:
        area = int(m.sum())
        if area < min_area:
            continue  # (almost) fully occluded
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        x, y, w, h = mask_utils.toBbox(rle).tolist()
        rle['counts'] = rle['counts'].decode('ascii')
        anns.append(dict(id=next_id + len(anns), image_id=image_id,
                         category_id=cls + 1, segmentation=rle, area=area,
                         bbox=[x, y, w, h], iscrowd=0))
    return anns


def generate(out: str, num_train: int = 300, num_val: int = 50,
             size: int = 192, max_shapes: int = 4, seed: int = 0,
             min_area: int = 40) -> dict:
    """Write the dataset (idempotent: skipped when the manifest matches)."""
    root = Path(out)
    params = dict(version=VERSION, num_train=num_train, num_val=num_val,
                  size=size, max_shapes=max_shapes, seed=seed,
                  min_area=min_area)
    manifest = root / 'manifest.json'
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old.get('params') == params and _counts_ok(root, old['counts']):
            print(f'demo dataset in {root} is up to date')
            return old
    counts = {}
    for split, n, split_seed in (('training', num_train, seed),
                                 ('validation', num_val, seed + 1)):
        rng = np.random.default_rng(split_seed)
        img_dir = root / 'images' / split
        ann_dir = root / 'annotations' / split
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in tqdm(range(n), desc=f'demo {split}', unit='img'):
            img, sem, masks = render(rng, size, max_shapes)
            name = f'{i:05d}.png'
            cv2.imwrite(str(img_dir / name), img[..., ::-1])
            cv2.imwrite(str(ann_dir / name), sem)
            images.append(dict(id=i, file_name=f'{split}/{name}',
                               height=size, width=size))
            anns += _coco_annotations(masks, i, len(anns) + 1, min_area)
        coco = dict(images=images, annotations=anns, categories=[
            dict(id=k + 1, name=c, supercategory='shape')
            for k, c in enumerate(CLASSES)])
        atomic_write_json(
            coco, root / 'annotations' / f'instances_{split}.json')
        counts[split] = dict(images=n, instances=len(anns))
    info = dict(params=params, counts=counts)
    if not _counts_ok(root, counts):
        raise RuntimeError(f'demo dataset in {root} failed its count check')
    atomic_write_json(info, manifest)
    print(f'demo dataset written to {root}: {counts}')
    return info


def cfg_options(root: str, coco: bool) -> list:
    """``--cfg-options`` pointing a demo config's loaders (and, with ``coco``,
    its COCO evaluators) at the dataset written under ``root``."""
    opts = [f'{loader}.dataset.data_root={root}/' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')]
    if coco:
        ann = f'{root}/annotations/instances_validation.json'
        opts += [f'val_evaluator.ann_file={ann}',
                 f'test_evaluator.ann_file={ann}']
    return opts


def _counts_ok(root: Path, counts: dict) -> bool:
    for split, c in counts.items():
        ann = root / 'annotations' / f'instances_{split}.json'
        if not ann.exists():
            return False
        for sub in ('images', 'annotations'):
            if len(list((root / sub / split).glob('*.png'))) != c['images']:
                return False
        coco = json.loads(ann.read_text())
        if (len(coco['images']), len(coco['annotations'])) != (
                c['images'], c['instances']):
            return False
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--out', default='data/demo')
    p.add_argument('--num-train', type=int, default=300)
    p.add_argument('--num-val', type=int, default=50)
    p.add_argument('--size', type=int, default=192)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    generate(a.out, a.num_train, a.num_val, a.size, seed=a.seed)


if __name__ == '__main__':
    main()
