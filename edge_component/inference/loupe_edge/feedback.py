"""Which frames go back for labeling: detections the model is unsure about, within a rate limit and a daily cap.

A frame is uncertain when a detection's confidence lies inside ``[band_low, band_high)``: any of its detections
(``criterion="any"``, the default), or its most confident one (``"top"``: the model's best guess is unsure; the
band a model's card carries is calibrated for this criterion, ``loupe.uncertainty``).  A frame with no detection
at all is a confident pass, not an uncertain one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

REASON_BAND = "confidence-band"


@dataclass
class Decision:
    uncertain: bool
    send: bool
    reason: str | None
    max_confidence: float
    limited_by: str | None = None  # "rate" | "daily-cap" when uncertain but not sent


class FeedbackSampler:
    def __init__(
        self,
        band_low: float,
        band_high: float,
        max_per_minute: int,
        max_per_day: int,
        clock: Callable[[], float] = time.time,
        day_count: Callable[[str], int] | None = None,
        day_bump: Callable[[str], None] | None = None,
        criterion: str = "any",
    ) -> None:
        if not 0.0 <= band_low < band_high <= 1.0:
            raise ValueError(f"feedback band must satisfy 0 <= low < high <= 1, got [{band_low}, {band_high})")
        if criterion not in ("any", "top"):
            raise ValueError(f"feedback criterion must be 'any' or 'top', got {criterion!r}")
        self.low, self.high = band_low, band_high
        self.criterion = criterion
        self.per_minute = max_per_minute
        self.per_day = max_per_day
        self.clock = clock
        self._recent: deque[float] = deque()
        self._day = ""
        self._day_sent = 0
        self._day_count = day_count
        self._day_bump = day_bump

    def is_uncertain(self, scores: np.ndarray) -> bool:
        if self.criterion == "top":
            scores = scores.max(keepdims=True) if scores.size else scores
        return bool(np.any((scores >= self.low) & (scores < self.high)))

    def decide(self, scores: np.ndarray) -> Decision:
        top = float(scores.max()) if scores.size else 0.0
        if not self.is_uncertain(scores):
            return Decision(False, False, None, top)
        now = self.clock()
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        if day != self._day:
            self._day = day
            self._day_sent = self._day_count(day) if self._day_count else 0
        while self._recent and now - self._recent[0] >= 60.0:
            self._recent.popleft()
        if self._day_sent >= self.per_day:
            return Decision(True, False, REASON_BAND, top, "daily-cap")
        if len(self._recent) >= self.per_minute:
            return Decision(True, False, REASON_BAND, top, "rate")
        self._recent.append(now)
        self._day_sent += 1
        if self._day_bump:
            self._day_bump(day)
        return Decision(True, True, REASON_BAND, top)
