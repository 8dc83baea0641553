"""Counters behind the health message: throughput, latency percentiles, drift signal (shadow agreement: ``shadow``)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np


class WindowStats:
    """Per-interval frame statistics; ``snapshot(reset=True)`` starts the next interval."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset(time.monotonic())
        self.total_frames = 0
        self.counters: Counter[str] = Counter()
        self.errors: deque[str] = deque(maxlen=10)
        self.error_count = 0

    def _reset(self, now: float) -> None:
        self._start = now
        self._lat: list[float] = []
        self._split = np.zeros(4)
        self._frames = 0
        self._uncertain = 0
        self._with_det = 0
        self._top_sum = 0.0
        self._models: set[str | None] = set()

    def frame(
        self,
        total_ms: float,
        split: tuple[float, float, float, float],
        top: float,
        uncertain: bool,
        model_version: str | None = None,
    ) -> None:
        with self._lock:
            self._models.add(model_version)
            self._frames += 1
            self.total_frames += 1
            self._lat.append(total_ms)
            self._split += split
            if top > 0:
                self._with_det += 1
                self._top_sum += top
            self._uncertain += int(uncertain)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def error(self, message: str) -> None:
        with self._lock:
            self.error_count += 1
            self.errors.append(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}")

    def snapshot(self, reset: bool = True) -> dict:
        with self._lock:
            now = time.monotonic()
            elapsed = max(now - self._start, 1e-9)
            n = self._frames
            lat = np.asarray(self._lat) if self._lat else np.zeros(1)
            split = self._split / n if n else self._split
            out = {
                "interval_s": round(elapsed, 3),
                "frames": n,
                "frames_total": self.total_frames,
                "fps": round(n / elapsed, 3),
                "latency_ms": {
                    "p50": round(float(np.percentile(lat, 50)), 3) if n else None,
                    "p95": round(float(np.percentile(lat, 95)), 3) if n else None,
                    "read": round(float(split[0]), 3),
                    "preprocess": round(float(split[1]), 3),
                    "infer": round(float(split[2]), 3),
                    "postprocess": round(float(split[3]), 3),
                },
                "uncertain_share": round(self._uncertain / n, 4) if n else None,
                # the counts behind the two shares: the cloud sums them per model (a canary's window)
                "uncertain_frames": self._uncertain,
                "detection_frames": self._with_det,
                "detection_share": round(self._with_det / n, 4) if n else None,
                "mean_top_confidence": round(self._top_sum / self._with_det, 4) if self._with_det else None,
                # the model that ran every frame of this window; null when a model switch fell inside it: the cloud
                # counts a window for one model only (a canary's evidence), never one model's frames for another
                "frames_model_version": next(iter(self._models)) if len(self._models) == 1 else None,
                "counters": dict(self.counters),
                "errors": {"count": self.error_count, "recent": list(self.errors)},
            }
            if reset:
                self._reset(now)
            return out
