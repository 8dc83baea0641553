"""Shadow mode: a candidate model runs beside production on the same frames and is measured against it.

Only production drives results, verdicts and uncertain-frame uploads. On every ``everyNthFrame``-th production frame
the candidate runs on the same prepared tensor (letterboxed again only when its input size differs) and the device
counts, per health window, how far the two agree:

* **boxes**: production's shown boxes against the candidate's, matched one to one (greedy by production confidence,
  same class, IoU >= 0.5). 0.5 is the IoU of the PASCAL VOC criterion and of mAP50, the metric the training gate
  scores the test split with, so field agreement and test metrics use one notion of "the same box"; it also
  tolerates the few pixels two models' box edges differ on the same defect. Counted: production boxes, candidate
  boxes, matched pairs (recall = matched / production, precision = matched / candidate).
* **verdicts**: OK (pass) / NG (defect), as the production verdict rule decides for each model's boxes: the four
  cells of the 2x2 table, so a later step can tell "misses defects" (NG->OK) from "raises false alarms" (OK->NG).
* **uncertain shares**: frames the feedback band calls uncertain, for the candidate and for production on the same
  sampled frames (the same band and criterion; production's share over *all* frames is in the health message).
* **candidate latency** p50/p95 (candidate session + decode on the sampled frames) and **errors**.

Memory is bounded: integer counters and a fixed log-spaced latency histogram, never a list of frames.

The candidate's artifacts arrive like production's: a ``com.loupe.shadow`` component built from the same
``com.loupe.model`` recipe template (same ZIP, same ``check_model.py`` install check against the registered
digests, which writes ``{work:path}/current.json``). This component follows that pointer
(``<workDir>/../com.loupe.shadow/current.json``, or ``shadow.pointerFile``, or the folder ``shadow.dir`` in local
runs), and loads the candidate only when the pointer names the configured ``shadow.modelVersion`` and the files
match the digests in ``shadow.sha256`` (the deployment's configuration is the trust anchor, as for production).
A missing or broken candidate never stops production: the reason is in the health message (``shadow.state``,
``shadow.error``) and counted in ``shadow.errors``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from loupe_edge.engine import Preparer, boxes_from_output
from loupe_edge.manager import ModelManager, ModelSource
from loupe_edge.model import MODEL_FILES, LoadedModel, ModelError, ModelSettings, load_model
from loupe_edge.postprocess import match_boxes

log = logging.getLogger(__name__)

SHADOW_COMPONENT = "com.loupe.shadow"
MATCH_IOU = 0.5


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LatencyHistogram:
    """Streaming percentiles in constant memory: log-spaced bins 5 % wide from 0.01 ms to ~ 10 min.

    A percentile is reported as the geometric middle of its bin, within 2.5 % of the exact value (a sorted list of
    every frame's latency would grow with the window; a window of hours at 30 fps is ~ 10^5 frames)."""

    LOW_MS = 0.01
    RATIO = 1.05
    BINS = 370  # 0.01 ms * 1.05**370 ~ 6.8e5 ms

    def __init__(self) -> None:
        self.counts = np.zeros(self.BINS + 1, dtype=np.int64)  # the last bin holds everything above
        self.n = 0

    def add(self, ms: float) -> None:
        if not math.isfinite(ms) or ms <= self.LOW_MS:
            i = 0
        else:
            i = min(self.BINS, int(math.log(ms / self.LOW_MS) / math.log(self.RATIO)) + 1)
        self.counts[i] += 1
        self.n += 1

    def percentile(self, q: float) -> float | None:
        if self.n == 0:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.n))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        if i == 0:
            return self.LOW_MS
        lo = self.LOW_MS * self.RATIO ** (i - 1)
        return lo * math.sqrt(self.RATIO)


class AgreementWindow:
    """One health window's counters of production vs candidate (thread-safe; ``snapshot(reset=True)`` rolls it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start_wall = utc_now()
        self._start = time.monotonic()
        self._zero()

    def _zero(self) -> None:
        self.production_frames = 0  # every production frame of the window
        self.frames = 0  # frames the candidate ran on
        self.errors = 0
        self.verdict = {"ok_ok": 0, "ok_ng": 0, "ng_ok": 0, "ng_ng": 0}  # production_candidate
        self.boxes = {"production": 0, "shadow": 0, "matched": 0}
        self.uncertain = {"production": 0, "shadow": 0}
        self.latency = LatencyHistogram()

    def seen(self) -> None:
        with self._lock:
            self.production_frames += 1

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def add(
        self,
        prod: np.ndarray,
        cand: np.ndarray,
        prod_ng: bool,
        cand_ng: bool,
        prod_uncertain: bool,
        cand_uncertain: bool,
        ms: float,
    ) -> None:
        matched = match_boxes(prod, cand, MATCH_IOU)
        cell = f"{'ng' if prod_ng else 'ok'}_{'ng' if cand_ng else 'ok'}"
        with self._lock:
            self.frames += 1
            self.verdict[cell] += 1
            self.boxes["production"] += int(prod.shape[0])
            self.boxes["shadow"] += int(cand.shape[0])
            self.boxes["matched"] += matched
            self.uncertain["production"] += int(prod_uncertain)
            self.uncertain["shadow"] += int(cand_uncertain)
            self.latency.add(ms)

    def snapshot(self, reset: bool = True) -> dict[str, Any]:
        with self._lock:
            now, end = time.monotonic(), utc_now()
            f, b = self.frames, self.boxes
            agree = self.verdict["ok_ok"] + self.verdict["ng_ng"]
            p50, p95 = self.latency.percentile(50), self.latency.percentile(95)
            out = {
                "window": {"start": self._start_wall, "end": end, "seconds": round(now - self._start, 3)},
                "production_frames": self.production_frames,
                "frames": f,
                "errors": self.errors,
                "verdict": dict(self.verdict),
                "boxes": dict(b),
                "uncertain": dict(self.uncertain),
                "latency_ms": {
                    "p50": round(p50, 3) if p50 is not None else None,
                    "p95": round(p95, 3) if p95 is not None else None,
                },
                # the ratios of this window, for people reading one message; the cloud sums the counters above
                "verdict_agreement": round(agree / f, 4) if f else None,
                "box_recall": round(b["matched"] / b["production"], 4) if b["production"] else None,
                "box_precision": round(b["matched"] / b["shadow"], 4) if b["shadow"] else None,
                "shadow_uncertain_share": round(self.uncertain["shadow"] / f, 4) if f else None,
                "production_uncertain_share": round(self.uncertain["production"] / f, 4) if f else None,
            }
            if reset:
                self._start, self._start_wall = now, end
                self._zero()
            return out


@dataclass
class ShadowSpec:
    """The ``shadow`` block of the component configuration (validated by ``loupe_edge.config``)."""

    model_version: str
    model_package_arn: str
    sha256: dict[str, str]
    every_nth_frame: int
    precision: str
    folder: Path | None
    pointer: Path | None

    @classmethod
    def from_config(cls, block: dict[str, Any], work_dir: Path) -> ShadowSpec:
        folder = Path(block["dir"]) if block["dir"] else None
        pointer = None
        if folder is None:
            pointer = Path(block["pointerFile"] or work_dir.parent / SHADOW_COMPONENT / "current.json")
        return cls(
            model_version=block["modelVersion"],
            model_package_arn=block["modelPackageArn"],
            sha256={k: v.lower() for k, v in block["sha256"].items() if v},
            every_nth_frame=int(block["everyNthFrame"]),
            precision=block["precision"],
            folder=folder,
            pointer=pointer,
        )

    def identity(self) -> tuple:
        return (
            self.model_version,
            self.model_package_arn,
            tuple(sorted(self.sha256.items())),
            self.every_nth_frame,
            self.precision,
            self.folder,
            self.pointer,
        )


MAX_ERROR_CHARS = 500  # an onnxruntime error can run to pages; the cloud's model takes at most 2000
# One deployment carries both the inference component's new configuration (the shadow block) and com.loupe.shadow;
# with no dependency between them the nucleus may hand the configuration over before the shadow component's Install
# wrote its pointer. For this long a missing pointer is the candidate still installing, not an error of it.
INSTALL_GRACE_S = 120.0


def _clip(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class ShadowRunner:
    """The candidate beside production: loads it in the background, runs it on every Nth frame, counts agreement."""

    def __init__(
        self,
        spec: ShadowSpec,
        settings: ModelSettings,
        poll_seconds: float,
        max_pixels: int,
        loader: Callable[..., LoadedModel] = load_model,
        install_grace_s: float | None = None,
    ) -> None:
        self.spec = spec
        grace = INSTALL_GRACE_S if install_grace_s is None else install_grace_s
        self._installing_until = time.monotonic() + grace
        self.window = AgreementWindow()
        self._preparer = Preparer(max_pixels)  # only when the candidate's input size differs from production's
        self._loader = loader
        self._index = 0
        self.last_error: str | None = None  # the last failed run of a loaded candidate
        self._load_error: str | None = None
        self.manager = ModelManager(
            ModelSource(folder=spec.folder, pointer=spec.pointer),
            settings,
            state_dir=None,  # no last-good copy: a candidate that fails is simply not run
            on_failure=self._on_failure,
            loader=self._load,
        )
        self._poll = poll_seconds

    # -- loading ----------------------------------------------------------------------------------------
    def _load(
        self,
        folder: Path,
        settings: ModelSettings,
        expected_version: str | None = None,
        expected_digests: dict[str, str] | None = None,
    ) -> LoadedModel:
        """Load the candidate the configuration names, and only that one: the pointer's version must be
        ``shadow.modelVersion`` and the files must match ``shadow.sha256`` (and the pointer's and card's digests)."""
        spec = self.spec
        if spec.pointer is not None:
            if spec.model_version and expected_version != spec.model_version:
                raise ModelError(
                    f"{spec.pointer} names model {expected_version!r}, the configuration {spec.model_version!r} "
                    f"(waiting for {SHADOW_COMPONENT} of that version)"
                )
            if settings.verify_digest and MODEL_FILES["fp32"] not in spec.sha256:
                raise ModelError("shadow.sha256 registers no digest for model.onnx: refusing an unverifiable candidate")
            for name, digest in (expected_digests or {}).items():
                if name in spec.sha256 and digest.lower() != spec.sha256[name]:
                    raise ModelError(
                        f"{name}: the pointer registers {digest[:12]}…, the configuration {spec.sha256[name][:12]}…"
                    )
        digests = {**(expected_digests or {}), **spec.sha256}
        version = spec.model_version or expected_version
        return self._loader(folder, settings, expected_version=version, expected_digests=digests)

    def _installing(self) -> bool:
        """The shadow component has not written its pointer yet, and may still (:data:`INSTALL_GRACE_S`)."""
        pointer = self.spec.pointer
        return pointer is not None and not pointer.exists() and time.monotonic() < self._installing_until

    def _on_failure(self, reason: str) -> None:
        """Counted once per distinct reason: the watcher re-checks a missing pointer on every poll."""
        if self._installing():
            log.info("shadow candidate: waiting for %s to install (%s)", SHADOW_COMPONENT, reason)
            return
        if reason == self._load_error:
            return
        self._load_error = reason
        self.window.error()
        log.error("shadow candidate unusable (production unaffected): %s", reason)

    def start(self) -> None:
        self.manager.start(self._poll)
        self.manager.notify()  # first load now, in the watcher's thread: production never waits for it

    def stop(self) -> None:
        self.manager.stop()

    @property
    def model(self) -> LoadedModel | None:
        return self.manager.current

    # -- per frame --------------------------------------------------------------------------------------
    def observe(
        self,
        rgb: np.ndarray,
        tensor: np.ndarray,
        lb: Any,
        prod_shown: np.ndarray,
        prod_ng: bool,
        prod_uncertain: bool,
        decode_threshold: float,
        conf_threshold: float,
        is_ng: Callable[[np.ndarray], bool],
        is_uncertain: Callable[[np.ndarray], bool],
    ) -> bool:
        """Count one production frame and, on every Nth, run the candidate on it. Never raises. True if it ran."""
        try:
            self.window.seen()
            self._index += 1
            cand = self.manager.current
            if cand is None or (self._index - 1) % self.spec.every_nth_frame:
                return False
            t0 = time.perf_counter()
            if tensor.shape[2:] != (cand.input_h, cand.input_w):
                tensor, lb = self._preparer.letterbox(rgb, (cand.input_w, cand.input_h))
            dets = boxes_from_output(cand, cand.infer(tensor), lb, decode_threshold)
            ms = (time.perf_counter() - t0) * 1000
            scores = dets[:, 4] if dets.shape[0] else np.zeros(0, dtype=np.float32)
            shown = dets[scores > conf_threshold] if dets.shape[0] else dets
            self.window.add(prod_shown, shown, prod_ng, is_ng(shown), prod_uncertain, is_uncertain(scores), ms)
            return True
        except Exception as exc:  # the candidate's failure is counted; production's frame is already stored
            self.window.error()
            self.last_error = f"inference failed: {exc!r}"
            log.warning("shadow inference failed: %r", exc)
            return False

    def snapshot(self, reset: bool = True) -> dict[str, Any]:
        cand = self.manager.current
        installing = cand is None and self._installing()
        if cand is not None:
            state = "running"
        elif self.manager.last_error is not None and not installing:
            state = "failed"
        else:
            state = "loading"
        return {
            "model_version": self.spec.model_version or (cand.version if cand else None),
            "model_package_arn": self.spec.model_package_arn or None,
            "every_nth_frame": self.spec.every_nth_frame,
            "state": state,
            "error": None if installing else _clip(self.manager.last_error if cand is None else self.last_error),
            **self.window.snapshot(reset),
        }
