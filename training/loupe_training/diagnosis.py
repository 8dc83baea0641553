"""Why a trained model may be weak, in plain words, and what to try.

:func:`diagnose` reads what training recorded (train_summary.json: the epochs, the per-epoch history, the early
stopping rule's record from :mod:`loupe_training.stopping`) and the training split's size, and names each sign:

- ``stopped_early``: patience stopped the run before its planned epochs (which rule, at which epoch of how many);
- ``not_converged``: val mAP50 was still rising over the last :data:`RISING_WINDOW` epochs (more epochs would help);
- ``never_learned``: val mAP50 never reached the noise floor (from scratch) — the run learned nothing measurable;
- ``small_data``: fewer than :data:`MIN_TRAIN_IMAGES` training images or :data:`MIN_TRAIN_BOXES` boxes.

The result travels with the model: train_summary.json (the training job's output), gate.json's ``diagnosis_text``
(the Gate's refusal message and a refused candidate's package metadata), and the ``loupe train`` / demo output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

RISING_WINDOW = 5  # epochs
RISING_MIN_GAIN = 0.01  # val mAP50 the last window must add over the best before it to count as still rising
# below these a from-scratch YOLOv8n rarely learns a defect class well (the metal-tags set: ~300 train images)
MIN_TRAIN_IMAGES = 100
MIN_TRAIN_BOXES = 150
TEXT_LIMIT = 900  # the Fail step's message carries it with the scores
# A CustomerMetadataProperties value (the registered package's ``training_diagnosis``): at most 256 characters of
# letters, spaces, digits and _.:/=+-@ (botocore's CustomerMetadataValue shape, from SageMaker's API model)
METADATA_LIMIT = 256
_METADATA_UNSAFE = re.compile(r"[^\w\s.:/=+\-@]")


def train_split_size(prepared_root: Path) -> dict[str, int]:
    """Images and boxes of a prepared dataset's training split (its YOLO label files)."""
    labels = sorted((Path(prepared_root) / "labels" / "train").glob("*.txt"))
    boxes = sum(1 for f in labels for line in f.read_text().splitlines() if line.strip())
    return {"images": len(labels), "boxes": boxes}


def diagnose(summary: dict[str, Any], train_size: dict[str, int]) -> dict[str, Any]:
    """``{"findings": [{"sign", "text", "try"}], "text": one paragraph}`` for a training summary."""
    findings: list[dict[str, str]] = []
    history = summary.get("history") or []
    planned = int((summary.get("hyperparameters") or {}).get("epochs") or summary.get("epochs_run") or 0)
    run = int(summary.get("epochs_run") or len(history))
    stopping = summary.get("stopping") or {}
    stopped = stopping.get("stopped_early_at")
    if stopped:
        findings.append(
            {
                "sign": "stopped_early",
                "text": (
                    f"training stopped early at epoch {stopped} of {planned}: no val mAP50-95 gain in "
                    f"{stopping.get('patience')} epochs counted from epoch {stopping.get('counted_from')} "
                    f"(rule: {stopping.get('rule')})"
                ),
                "try": "raise patience (hyperparameter patience) or min_epochs",
                "short": f"stopped early at epoch {stopped} of {planned}",
                "short_try": "more patience",
            }
        )
    maps = [float(row.get("val_map50") or 0.0) for row in history]
    if len(maps) > RISING_WINDOW and max(maps[-RISING_WINDOW:]) - max(maps[:-RISING_WINDOW]) >= RISING_MIN_GAIN:
        findings.append(
            {
                "sign": "not_converged",
                "text": (
                    f"not converged: val mAP50 still rose over the last {RISING_WINDOW} epochs "
                    f"(to {max(maps[-RISING_WINDOW:]):.3f} from {max(maps[:-RISING_WINDOW]):.3f} before them)"
                ),
                "try": f"train for more epochs (ran {run})",
                "short": f"not converged: val mAP50 still rising at {max(maps[-RISING_WINDOW:]):.3f}",
                "short_try": "more epochs",
            }
        )
    floor = stopping.get("noise_floor_map50")
    if floor and stopping.get("moved_epoch") is None and history:
        findings.append(
            {
                "sign": "never_learned",
                "text": f"val mAP50 never reached {floor} in {run} epochs: the model learned nothing measurable",
                "try": "more labeled data, more epochs, or a warm start from trained weights",
                "short": f"never learned: val mAP50 never reached {floor}",
                "short_try": "more data or a warm start",
            }
        )
    images, boxes = int(train_size.get("images", 0)), int(train_size.get("boxes", 0))
    if images < MIN_TRAIN_IMAGES or boxes < MIN_TRAIN_BOXES:
        findings.append(
            {
                "sign": "small_data",
                "text": (
                    f"data too small: {images} training images with {boxes} boxes "
                    f"(a model from scratch wants at least {MIN_TRAIN_IMAGES} images and {MIN_TRAIN_BOXES} boxes)"
                ),
                "try": "label more images, or warm-start from trained weights (loupe train --weights)",
                "short": f"data too small: {images} train images with {boxes} boxes",
                "short_try": "more data or a warm start",
            }
        )
    if not findings:
        text = (
            f"no sign of a training problem: ran {run} of {planned} epochs, val mAP50 had settled, "
            f"{images} training images with {boxes} boxes"
        )
    else:
        tries = list(dict.fromkeys(f["try"] for f in findings))
        text = "; ".join(f["text"] for f in findings) + ". Try: " + "; ".join(tries) + "."
    if findings:
        short_tries = " or ".join(dict.fromkeys(f["short_try"] for f in findings))
        short = ". ".join(f["short"] for f in findings) + f". Try: {short_tries}"
    else:
        short = f"no sign of a training problem: {run} of {planned} epochs. {images} train images"
    return {"findings": findings, "text": _clip(text), "short": metadata_value(short)}


def metadata_value(text: str) -> str:
    """``text`` as a model package metadata value SageMaker accepts: only letters, spaces, digits and
    ``_.:/=+-@`` (others become spaces), at most :data:`METADATA_LIMIT` characters, never empty."""
    cleaned = " ".join(_METADATA_UNSAFE.sub(" ", text).split())
    if len(cleaned) > METADATA_LIMIT:
        cleaned = cleaned[: METADATA_LIMIT - 3].rstrip() + "..."
    return cleaned or "none"


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 3] + "..."
