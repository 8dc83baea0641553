"""What people's labels say about the canary's calls: per model, the labeled precision of the boxes its devices
predicted on the frames they sent back, over the canary's window.

The frames. A device uploads its uncertain frames with the boxes it predicted and the model that ran them (S3
metadata ``model-version`` and ``boxes``); ingest keeps both in the ledger entry's origin (``origin.model_version``,
``origin.boxes``: ``[[class_id, confidence, x1, y1, x2, y2], ...]`` in the frame's pixels). The labeling callback
then writes the labels (``status`` labeled, ``annotations``: JSON ``[{"class_id", "left", "top", "width",
"height"}, ...]`` in the pixels of the upright image the labelers saw, :meth:`loupe.ledger.Ledger.mark_labeled`).
The canary's labeled frames are the ledger's labeled edge-feedback entries recorded since the canary started, run
by the challenger on the cohort's devices or by the champion on the rest (on the cohort when there is no rest),
read with one Query of the ledger's status index (:meth:`loupe.ledger.Ledger.labeled_feedback`).

The counting (the test is :mod:`loupe.deployment.canary_stats`): a predicted box is a true positive when a labeled
box of the same class overlaps it with IoU >= :data:`IOU_MATCH`; predictions are matched most confident first, each
to the unmatched labeled box it overlaps most, so each labeled box is matched once. A frame is an NG call when the
model predicted at least one box on it, and the call is correct when its labels hold at least one box. A labeled
frame whose boxes were not kept (malformed metadata, or a device older than the boxes) or whose image carries an
EXIF rotation (the device's boxes are in the stored pixels, the labels in the upright ones) is counted as skipped,
not guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from loupe.deployment.canary_stats import LabeledCounts

IOU_MATCH = 0.5


class LabeledFeedback(Protocol):
    """The ledger call this module makes (:class:`loupe.ledger.Ledger`)."""

    def labeled_feedback(self, since: str, model_versions: Iterable[str]) -> Iterable[dict[str, Any]]: ...


def iso(epoch: float) -> str:
    """``epoch`` as the ledger writes its times (:func:`loupe.ledger.now_iso`), so the two compare as strings."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes; 0 when both are empty."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def true_positives(predicted: list[list[float]], labeled: list[dict[str, Any]]) -> int:
    """Predicted boxes ``[class_id, confidence, x1, y1, x2, y2]`` matched to labeled boxes (same class, IoU >=
    :data:`IOU_MATCH`, each labeled box once, the most confident prediction first)."""
    free = [
        (int(b["class_id"]), (float(b["left"]), float(b["top"]), b["left"] + b["width"], b["top"] + b["height"]))
        for b in labeled
    ]
    used = [False] * len(free)
    hits = 0
    for row in sorted(predicted, key=lambda r: -float(r[1])):
        box = (float(row[2]), float(row[3]), float(row[4]), float(row[5]))
        best, best_iou = -1, IOU_MATCH
        for i, (cls, label) in enumerate(free):
            if used[i] or cls != int(row[0]):
                continue
            overlap = iou(box, label)
            if overlap >= best_iou:
                best, best_iou = i, overlap
        if best >= 0:
            used[best] = True
            hits += 1
    return hits


def _frame(item: dict[str, Any]) -> tuple[list[list[float]], list[dict[str, Any]]] | None:
    """(predicted, labeled) boxes of one ledger entry, or None when they cannot be compared."""
    origin = item.get("origin") or {}
    if "boxes" not in origin or int(item.get("orientation") or 1) not in (0, 1):
        return None
    try:
        predicted = json.loads(origin["boxes"])
        labeled = json.loads(item.get("annotations") or "[]")
    except (TypeError, ValueError):
        return None
    return predicted, labeled


def count(items: Iterable[dict[str, Any]]) -> LabeledCounts:
    """One model's labeled frames, counted (see the module's docstring)."""
    frames = predicted = hits = calls = correct = skipped = 0
    for item in items:
        pair = _frame(item)
        if pair is None:
            skipped += 1
            continue
        boxes, labels = pair
        frames += 1
        predicted += len(boxes)
        hits += true_positives(boxes, labels)
        if boxes:
            calls += 1
            correct += int(bool(labels))
    return LabeledCounts(frames, predicted, hits, calls, correct, skipped)


def labeled_precision(ledger: LabeledFeedback, canary: dict[str, Any], since: str) -> dict[str, LabeledCounts]:
    """``{"challenger": ..., "champion": ...}``: each model's labeled frames recorded since ``since`` on its own
    devices (``canary``: the run's canary state: versions, cohort, rest)."""
    challenger, champion = str(canary["challenger_version"]), str(canary["champion_version"])
    cohort = set(canary.get("cohort") or [])
    rest = set(canary.get("rest") or []) or cohort
    mine: dict[str, list[dict[str, Any]]] = {"challenger": [], "champion": []}
    for item in ledger.labeled_feedback(since, [challenger, champion]):
        origin = item.get("origin") or {}
        version, device = str(origin.get("model_version") or ""), origin.get("device")
        if version == challenger and device in cohort:
            mine["challenger"].append(item)
        elif version == champion and device in rest:
            mine["champion"].append(item)
    return {who: count(items) for who, items in mine.items()}
