"""calibrate: the uncertainty band of a trained model, for its model card (``uncertainty_band``).

The band (``loupe.uncertainty``) says which frames the model's devices send back for labeling. It is derived from
what the model does on the labeled images of its dataset version that it never trained on (the ``val`` and
``test`` splits): each image's most confident detection and whether it matches a labeled box, as Ultralytics'
validator finds them (the same decoding and NMS as the edge component, at the validator's low confidence).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from loupe import uncertainty
from loupe_training import evaluate as ev
from loupe_training.prepare import Prepared

SPLITS = ("val", "test")


def frames_from_stats(stats: Iterable[dict[str, Any]]) -> list[uncertainty.Frame]:
    """One :class:`loupe.uncertainty.Frame` per image from the validator's per-image records (``conf``, ``tp``:
    one row per detection, column 0 = matched at IoU 0.5; ``target_cls``: one entry per labeled box)."""
    frames = []
    for record in stats:
        conf = np.asarray(record.get("conf", ()), dtype=np.float64).reshape(-1)
        boxes = int(np.asarray(record.get("target_cls", ())).size)
        if conf.size == 0:
            frames.append(uncertainty.Frame(0.0, False, boxes))
            continue
        best = int(conf.argmax())
        tp = np.asarray(record.get("tp", ()), dtype=bool)
        correct = bool(tp.ndim == 2 and tp.shape[0] > best and tp.shape[1] > 0 and tp[best, 0])
        frames.append(uncertainty.Frame(float(conf[best]), correct, boxes))
    return frames


def uncertainty_band(
    model_path: Path, prepared: Prepared, work_dir: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """The model card's ``uncertainty_band`` of ``model_path`` (an ONNX model), from the prepared dataset's
    held-out splits."""
    frames: list[uncertainty.Frame] = []
    used = []
    for split in SPLITS:
        folder = prepared.root / "images" / split
        if not folder.is_dir() or not any(folder.iterdir()):
            continue
        stats: list[dict[str, Any]] = []
        ev.score(model_path, prepared, split, Path(work_dir) / split, image_stats=stats)
        frames.extend(frames_from_stats(stats))
        used.append(split)
    band = uncertainty.calibrate(frames)
    log(
        f"uncertainty band [{band.low}, {band.high}) on the top confidence: {band.share:.0%} of the {band.frames} "
        f"{'+'.join(used) or 'held-out'} images inside ({band.method})"
    )
    return {**band.card(), "splits": used}
