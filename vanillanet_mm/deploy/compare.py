"""Output comparisons: raw tensors, detections paired by box, ONNX ops."""
from typing import Dict, List, Sequence

import torch


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.


def compare_outputs(names: Sequence[str], ref: Sequence[torch.Tensor],
                    got: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Max differences of ONNX Runtime's outputs vs mmdeploy's PyTorch ones:
    detection: boxes (px), scores, labels (count of differing), masks;
    segmentation: logits, absolute and relative to their max."""
    ref = dict(zip(names, ref))
    got = {k: torch.as_tensor(v).cpu() for k, v in got.items()}
    differing = [k for k in names if ref[k].shape != got[k].shape]
    if differing:  # e.g. another number of detections
        return dict(shapes_differing=float(len(differing)))
    if 'dets' in ref:
        order = match_detections(ref['dets'][0], ref['labels'][0],
                                 got['dets'][0], got['labels'][0])
        got = {k: v[:, order] for k, v in got.items()}
        out = dict(
            num_dets=float(ref['dets'].shape[1]),
            reordered=float((order != torch.arange(len(order))).sum()),
            box_px=_max_abs(ref['dets'][..., :4], got['dets'][..., :4]),
            score=_max_abs(ref['dets'][..., 4], got['dets'][..., 4]),
            labels_differing=float((ref['labels'] != got['labels']).sum()))
        if 'masks' in ref:
            out['mask'] = _max_abs(ref['masks'], got['masks'])
        return out
    a, b = ref[names[0]], got[names[0]]
    scale = float(a.abs().max()) or 1.
    return dict(logits=_max_abs(a, b), logits_relative=_max_abs(a, b) / scale)


def match_detections(ref_dets, ref_labels, dets, labels,
                     score_tol: float = 1e-4) -> torch.Tensor:
    """For each reference detection (K, 5), the index of its counterpart in
    ``dets``: itself unless scores tie (within ``score_tol``, same label),
    then the tied detection with the nearest box. Two runtimes may order
    detections of equal score differently; nothing else is forgiven."""
    k = len(ref_dets)
    box = (ref_dets[:, None, :4] - dets[None, :, :4]).abs().amax(-1)
    tie = ((ref_dets[:, None, 4] - dets[None, :, 4]).abs() <= score_tol) & (
        ref_labels[:, None] == labels[None, :])
    cost = torch.where(tie, box, torch.full_like(box, float('inf')))
    order, used = torch.arange(k), torch.zeros(k, dtype=torch.bool)
    for i in range(k):
        c = cost[i].masked_fill(used, float('inf'))
        j = int(c.argmin())
        if torch.isfinite(c[j]):  # else: no counterpart, keep i (it shows)
            order[i] = j
            used[j] = True
    return order


def merge_max(rows: List[Dict[str, float]]) -> Dict[str, float]:
    keys = {k for r in rows for k in r}
    return {k: max(r.get(k, 0.) for r in rows) for k in sorted(keys)}


def onnx_ops(onnx_file: str) -> Dict[str, List[str]]:
    """The ONNX graph's operator types by domain ('' = standard ONNX)."""
    import onnx
    ops: Dict[str, set] = {}
    for node in onnx.load(onnx_file, load_external_data=False).graph.node:
        ops.setdefault(node.domain or 'ai.onnx', set()).add(node.op_type)
    return {k: sorted(v) for k, v in sorted(ops.items())}
