"""Decoding YOLO detection outputs and class-aware non-maximum suppression, numpy only.

Semantics follow the detector's own validation path so that boxes agree with it: a candidate needs its best class
score strictly above the confidence threshold; candidates are ranked by score; a box is suppressed when its IoU
with a kept box of the same class is strictly greater than the IoU threshold; at most ``max_det`` boxes survive.
"""

from __future__ import annotations

import numpy as np

MAX_NMS = 30000  # candidates kept for NMS, highest scores first
CLASS_OFFSET = 7680.0  # per-class coordinate offset that makes one NMS pass class-aware


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS over xyxy boxes. Returns kept indices, highest score first.

    Ties in score keep the earlier index first (stable sort), like a stable argsort on the candidates.
    """
    if boxes.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float32) for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        w = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        h = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]  # NaN (zero-area pairs) counts as no overlap
    return np.asarray(keep, dtype=np.int64)


def decode_yolo(
    output: np.ndarray,
    conf_threshold: float,
    iou_threshold: float,
    max_det: int = 300,
    agnostic: bool = False,
) -> np.ndarray:
    """Decode one image's raw output into an (K, 6) array of ``x1, y1, x2, y2, score, class`` in input pixels.

    Accepts YOLOv8-style ``[1, 4 + nc, N]`` (centre-xywh + class scores, NMS needed) and end-to-end
    ``[1, N, 6]`` outputs (xyxy, score, class; already suppressed).
    """
    pred = output[0] if output.ndim == 3 else output
    if pred.ndim != 2:
        raise ValueError(f"unexpected detection output shape {output.shape}")
    if pred.shape[-1] == 6 and pred.shape[0] != 6 and pred.shape[0] >= pred.shape[1]:
        return _decode_end2end(pred, conf_threshold, max_det)
    nc = pred.shape[0] - 4
    if nc < 1:
        raise ValueError(f"detection output has {pred.shape[0]} rows; expected 4 box rows + at least one class")
    cls_scores = pred[4:]
    if nc == 1:
        best = cls_scores[0]
        cand = np.flatnonzero(best > conf_threshold)
        if cand.size == 0:
            return np.zeros((0, 6), dtype=np.float32)
        scores = best[cand]
        classes = np.zeros(cand.size, dtype=np.float32)
    else:
        best = cls_scores.max(axis=0)
        cand = np.flatnonzero(best > conf_threshold)
        if cand.size == 0:
            return np.zeros((0, 6), dtype=np.float32)
        sub = cls_scores[:, cand]
        cls_idx = sub.argmax(axis=0)
        scores = sub[cls_idx, np.arange(cand.size)]
        classes = cls_idx.astype(np.float32)
    if cand.size > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        cand, scores, classes = cand[top], scores[top], classes[top]
    xywh = pred[:4, cand]
    boxes = np.empty((cand.size, 4), dtype=np.float32)
    half_w = xywh[2] / 2
    half_h = xywh[3] / 2
    boxes[:, 0] = xywh[0] - half_w
    boxes[:, 1] = xywh[1] - half_h
    boxes[:, 2] = xywh[0] + half_w
    boxes[:, 3] = xywh[1] + half_h
    shifted = boxes if agnostic else boxes + (classes * CLASS_OFFSET)[:, None]
    keep = nms(shifted, scores, iou_threshold)[:max_det]
    out = np.empty((keep.size, 6), dtype=np.float32)
    out[:, :4] = boxes[keep]
    out[:, 4] = scores[keep]
    out[:, 5] = classes[keep]
    return out


def _decode_end2end(pred: np.ndarray, conf_threshold: float, max_det: int) -> np.ndarray:
    keep = np.flatnonzero(pred[:, 4] > conf_threshold)[:max_det]
    return pred[keep].astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU between xyxy boxes (N, 4) and (M, 4)."""
    if a.size == 0 or b.size == 0:
        return np.zeros((a.shape[0], b.shape[0]), dtype=np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def match_boxes(ref: np.ndarray, other: np.ndarray, iou_min: float, conf_tol: float | None = None) -> int:
    """Greedy one-to-one matching of ``other`` to ``ref`` detections (rows ``x1 y1 x2 y2 score class``).

    A pair matches when the classes agree, IoU >= ``iou_min`` and (if given) the scores differ by at most
    ``conf_tol``.  Returns the number of matched reference boxes.
    """
    if ref.shape[0] == 0 or other.shape[0] == 0:
        return 0
    iou = box_iou(ref[:, :4], other[:, :4])
    ok = (iou >= iou_min) & (ref[:, None, 5] == other[None, :, 5])
    if conf_tol is not None:
        ok &= np.abs(ref[:, None, 4] - other[None, :, 4]) <= conf_tol + 1e-6
    iou = np.where(ok, iou, -1.0)
    used = np.zeros(other.shape[0], dtype=bool)
    matched = 0
    for i in np.argsort(-ref[:, 4], kind="stable"):
        cand = np.where(used, -1.0, iou[i])
        j = int(cand.argmax())
        if cand[j] >= 0:
            used[j] = True
            matched += 1
    return matched
