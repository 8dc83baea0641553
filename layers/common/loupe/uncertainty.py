"""The uncertainty band of a model: which frames its devices send back for labeling.

A device sends a frame back when a detection's confidence lies inside ``[bandLow, bandHigh)``: the frame's most
confident detection (``criterion: top``), or any of its detections (``any``, the recipe's default;
``edge_component/inference/loupe_edge/feedback.py``). Where a model is unsure depends on the model: a barely
trained detector tops out at 0.3 on the scratches it finds, a well trained one at 0.9, so one constant band sends
back nearly every frame of the first and nearly none of the second. :func:`calibrate` derives the band of one
model from what it does on labeled images it never trained on (its validation and test splits), for the ``top``
criterion:

- ``low``: below it the model has seen nothing: the confidence of its best guess on clean images (no labeled
  box), when there are some (a high quantile: a frame no more confident than a clean one is a pass), and never
  under ``floor``;
- ``high``: just over the model's most confident mistake, a best guess that matches no labeled box: below it
  the model's best guesses are not to be trusted (a model that made no mistake gets an empty band);
- at most ``max_share`` of the images fall inside the band: when more do, ``high`` comes down until only the
  least confident ``max_share`` remain (a frame whose best guess is weakest is the one the model most needs a
  label for; one confident mistake does not open the band to every frame), so labeling stays a minority of
  what the cameras see.

A model unsure of more frames than the fleet's drift threshold (``DriftUncertainShareThreshold``) raises the drift
alarm through this band: that is the alarm's purpose (label, then retrain).

The band travels in the model card (``uncertainty_band``); the edge deployment sets it, with its criterion, in
the inference component's configuration for that model (:func:`settings_from_card`). Pure Python (the layer's
light dependencies only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_LOW, DEFAULT_HIGH = 0.25, 0.6  # edge_component/inference/recipe.yaml's feedback band
CRITERIA = ("top", "any")
MAX_SHARE = 1 / 3
FLOOR = 0.05
CLEAN_QUANTILE = 0.9
MIN_FRAMES = 10
MIN_WIDTH = 0.01
CARD_KEY = "uncertainty_band"


@dataclass(frozen=True)
class Frame:
    """One labeled image as the model sees it."""

    top: float  # the most confident detection's score; 0.0 when the model found nothing
    correct: bool  # that detection matches a labeled box (IoU >= 0.5, same class)
    boxes: int  # labeled boxes in the image (0: a clean image)


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    share: float  # share of the calibration images inside the band
    frames: int  # calibration images
    method: str  # "calibrated", or "default: <why>"
    criterion: str = "top"

    def settings(self) -> dict[str, Any]:
        """The inference component's ``feedback`` settings for this band."""
        return {"bandLow": self.low, "bandHigh": self.high, "criterion": self.criterion}

    def card(self) -> dict[str, Any]:
        """The model card's ``uncertainty_band`` entry."""
        return {**self.settings(), "share": self.share, "frames": self.frames, "method": self.method}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _past_last_mistake(frames: list[Frame], low: float) -> float:
    """Just over the most confident wrong best guess (a detection that matches no labeled box) at or above
    ``low``; ``low`` when the model made none."""
    wrong = [f.top for f in frames if f.top >= low and not f.correct]
    return math.floor(max(wrong) * 1000 + 1) / 1000 if wrong else low


def calibrate(
    frames: Iterable[Frame],
    *,
    max_share: float = MAX_SHARE,
    floor: float = FLOOR,
    min_frames: int = MIN_FRAMES,
) -> Band:
    """The ``top``-criterion band of a model from its frames on held-out labeled images (see the module)."""
    frames = [f for f in frames if math.isfinite(f.top)]
    if len(frames) < min_frames:
        why = f"default: {len(frames)} held-out images, {min_frames} needed"
        return Band(DEFAULT_LOW, DEFAULT_HIGH, 0.0, len(frames), why, criterion="any")
    clean = [f.top for f in frames if f.boxes == 0 and f.top > 0]
    # just over the clean images' best guesses: a frame no more confident than a clean image is a pass
    low = max(floor, math.floor(_quantile(clean, CLEAN_QUANTILE) * 1000 + 1) / 1000 if clean else 0.0)
    high = _past_last_mistake(frames, low)
    inside = sorted(f.top for f in frames if low <= f.top < high)
    allowed = int(max_share * len(frames))
    if len(inside) > allowed:
        high = inside[allowed]  # that frame and every frame above it are outside
    low = min(round(low, 3), 1.0 - MIN_WIDTH)
    high = min(1.0, math.floor(max(high, low + MIN_WIDTH) * 1000 + 1e-9) / 1000)  # down: never more inside
    share = sum(low <= f.top < high for f in frames) / len(frames)
    return Band(low, high, round(share, 4), len(frames), "calibrated")


def settings_from_card(card: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"bandLow", "bandHigh", "criterion"}`` from a model card's ``uncertainty_band``; None when the card has none
    or an unusable one (the device then keeps its recipe's default band)."""
    entry = card.get(CARD_KEY)
    if not isinstance(entry, Mapping):
        return None
    try:
        low, high = float(entry["bandLow"]), float(entry["bandHigh"])
    except (KeyError, TypeError, ValueError):
        return None
    criterion = entry.get("criterion", "any")
    if not (0.0 <= low < high <= 1.0) or criterion not in CRITERIA:
        return None
    return {"bandLow": low, "bandHigh": high, "criterion": criterion}
