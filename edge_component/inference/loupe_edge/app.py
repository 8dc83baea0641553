"""The inference component: frames in, results and feedback out, never losing either within the outbox bound.

Threads: a prefetch stage (read, decode, letterbox), an inference stage (``session.run``, one frame ahead), the
frame loop (this module's :meth:`EdgeApp.step`: decode/NMS, result, feedback, shadow), one sender per outbox queue
(results → MQTT, uploads → S3 then MQTT), a health publisher and a model watcher.
Everything that leaves the device passes through the disk outbox first; a frame leaves its source only after its
result (and, if sampled, its image) is in the outbox.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loupe_edge import formats
from loupe_edge.config import Config
from loupe_edge.engine import InferenceStage, Inferred, Prefetcher, Preparer, boxes_from_output
from loupe_edge.feedback import FeedbackSampler
from loupe_edge.health import HealthReporter
from loupe_edge.manager import ModelManager, ModelSource
from loupe_edge.model import LoadedModel, ModelSettings
from loupe_edge.outbox import EntryTooLarge, OutboxError
from loupe_edge.results import RESULTS, encode, feedback_entry, utc_now
from loupe_edge.senders import Senders
from loupe_edge.shadow import ShadowRunner, ShadowSpec
from loupe_edge.sources import FrameSource, RawFrame, make_source
from loupe_edge.stats import WindowStats
from loupe_edge.transport import Control, Transport, Uploader

log = logging.getLogger(__name__)


def model_settings(cfg: Config, precision: str | None = None) -> ModelSettings:
    m = cfg.get("model")
    return ModelSettings(
        precision=precision or m["precision"],
        providers=list(m["providers"]),
        intra_op_threads=m["intraOpThreads"],
        inter_op_threads=m["interOpThreads"],
        conf_threshold=m["confThreshold"],
        iou_threshold=m["iouThreshold"],
        max_detections=m["maxDetections"],
        verify_digest=m["verifyDigest"],
    )


@dataclass
class FrameOutcome:
    frame_id: str
    message: dict
    uncertain: bool
    sampled: bool


class EdgeApp:
    def __init__(
        self,
        cfg: Config,
        transport: Transport,
        control: Control,
        outbox: Any,
        uploader: Uploader | None = None,
        source: FrameSource | None = None,
        model_source: ModelSource | None = None,
    ) -> None:
        self.cfg = cfg
        self.thing = cfg.get("thingName")
        self.transport = transport
        self.control = control
        self.outbox = outbox
        self.uploader = uploader
        self.work_dir = Path(cfg.get("workDir"))
        self.stats = WindowStats()
        for problem in cfg.problems:
            log.error("configuration: %s", problem)
            self.stats.error(f"config: {problem}")
        self.source = source if source is not None else make_source(cfg.get("source"))
        self.settings = model_settings(cfg)
        self.manager = ModelManager(
            model_source or self._model_source(),
            self.settings,
            state_dir=self.work_dir,
            on_swap=self._on_swap,
            on_failure=self._on_model_failure,
        )
        self.preparer = Preparer(cfg.get("source.maxPixels"))
        self.prefetch = Prefetcher(self.source, self.preparer, self._input_size)
        self.inference = InferenceStage(
            self.prefetch, lambda: self.manager.current, Preparer(cfg.get("source.maxPixels"))
        )
        self._apply_runtime_config(cfg)
        self.shadow: ShadowRunner | None = None  # the candidate beside production (loupe_edge.shadow)
        self._shadow_identity: tuple | None = None
        self._started = False
        self._set_shadow(cfg)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._outbox_failing = False
        self.senders = Senders(
            outbox, transport, uploader, self.stats, self._stop, lambda: self.cfg.get("outbox.retrySeconds")
        )
        self.reporter = HealthReporter(
            self.thing,
            lambda: self.cfg,
            transport,
            outbox,
            self.stats,
            self.manager,
            self.source,
            lambda: self.shadow,
            self._stop,
        )

    # -- configuration --------------------------------------------------------------------------------
    def _model_source(self) -> ModelSource:
        m = self.cfg.get("model")
        if m["dir"]:
            return ModelSource(folder=Path(m["dir"]))
        pointer = m["pointerFile"] or os.fspath(self.work_dir.parent / "com.loupe.model" / "current.json")
        return ModelSource(pointer=Path(pointer))

    def _apply_runtime_config(self, cfg: Config) -> None:
        """The settings that can change without a restart: thresholds, verdict rule, feedback sampling."""
        m, fb, vd = cfg.get("model"), cfg.get("feedback"), cfg.get("verdict")
        self.settings.conf_threshold = m["confThreshold"]
        self.settings.iou_threshold = m["iouThreshold"]
        self.settings.max_detections = m["maxDetections"]
        self.defect_classes = set(vd["defectClasses"])
        self.verdict_min = vd["minConfidence"]
        self.feedback_on = fb["enabled"] and bool(fb["bucket"])
        if fb["enabled"] and not fb["bucket"]:
            msg = "feedback.bucket is not set: uncertain frames are counted but not uploaded"
            log.error("configuration: %s", msg)
            self.stats.error(f"config: {msg}")
        self.sampler = FeedbackSampler(
            fb["bandLow"],
            fb["bandHigh"],
            fb["maxPerMinute"],
            fb["maxPerDay"],
            day_count=lambda day: self.outbox.counter(f"feedback:{day}"),
            day_bump=self._persist_day_count,
            criterion=fb["criterion"],
        )
        self.decode_threshold = min(m["confThreshold"], fb["bandLow"]) if fb["enabled"] else m["confThreshold"]

    def _persist_day_count(self, day: str) -> None:
        """Keep the day's feedback count across restarts; if the outbox cannot, this process' count still holds."""
        try:
            self.outbox.bump(f"feedback:{day}")
        except OutboxError as exc:
            log.warning("feedback count of %s not persisted: %s", day, exc)

    def reconfigure(self, cfg: Config) -> None:
        for problem in cfg.problems:
            log.error("configuration: %s", problem)
            self.stats.error(f"config: {problem}")
        self._apply_runtime_config(cfg)
        self.cfg = cfg
        self._set_shadow(cfg)
        log.info("configuration updated (thresholds, verdict, feedback and shadow applied; other keys need a restart)")

    def _set_shadow(self, cfg: Config) -> None:
        """Start, replace or end the shadow candidate when the ``shadow`` block changed (a deployment that adds,
        changes or removes a candidate takes effect without a restart; a new candidate starts a new window)."""
        block = cfg.get("shadow")
        spec = ShadowSpec.from_config(block, self.work_dir) if block["enabled"] else None
        identity = spec.identity() if spec is not None else None
        if identity == self._shadow_identity:
            return
        old = self.shadow
        self.shadow = None
        if old is not None:
            old.stop()
        if spec is not None:
            runner = ShadowRunner(
                spec,
                model_settings(cfg, block["precision"]),
                poll_seconds=cfg.get("model.pollSeconds"),
                max_pixels=cfg.get("source.maxPixels"),
            )
            if self._started:
                runner.start()
            self.shadow = runner
            log.info("shadow candidate %s on every %d. frame", spec.model_version or "(unnamed)", spec.every_nth_frame)
        self._shadow_identity = identity

    # -- model events ---------------------------------------------------------------------------------
    def _input_size(self) -> tuple[int, int] | None:
        model = self.manager.current
        return (model.input_w, model.input_h) if model is not None else None

    def _on_swap(self, old: LoadedModel | None, new: LoadedModel) -> None:
        self.stats.count("model_swaps")
        self._write_status("RUNNING", None)
        self.control.report(True)
        self.reporter.now.set()

    def _on_model_failure(self, reason: str) -> None:
        self.stats.error(f"model: {reason}")
        self.stats.count("model_failures")
        self._write_status("ERRORED", reason)
        if self.cfg.get("model.reportFailure"):
            self.control.report(False, reason)
        self.reporter.now.set()

    def on_update(self, why: str) -> None:
        """Greengrass told us something changed (component update or configuration)."""
        if "configuration of self" in why:
            fresh = self.control.configuration()
            if fresh is not None:
                from loupe_edge.config import deep_merge, validate

                keep = {"thingName": self.thing, "workDir": os.fspath(self.work_dir)}
                self.reconfigure(validate(deep_merge(fresh, keep)))
        self.manager.notify(why)

    def _write_status(self, state: str, error: str | None) -> None:
        model = self.manager.current
        doc = {
            "state": state,
            "model_version": model.version if model else None,
            "error": error,
            "updated": utc_now(),
        }
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.work_dir / "status.json.tmp"
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.work_dir / "status.json")
        except OSError as exc:
            log.warning("cannot write status file: %s", exc)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.manager.check()
        self.manager.start(self.cfg.get("model.pollSeconds"))
        self.control.start(self.on_update)
        self._started = True
        if self.shadow is not None:
            self.shadow.start()
        self._spawn("loupe-send-results", self.senders.results)
        self._spawn("loupe-send-uploads", self.senders.uploads)
        self._spawn("loupe-health", self.reporter.loop)
        self.inference.start()

    def _spawn(self, name: str, fn) -> None:
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop
        while not stop.is_set() and not self._stop.is_set():
            try:
                self.step(timeout=0.5)
            except Exception as exc:  # a bug on one frame must not stop the component
                log.exception("frame processing failed")
                self.stats.error(f"frame: {exc!r}")

    def stop(self) -> None:
        self._stop.set()
        self.inference.stop()
        self.source.close()
        self.manager.stop()
        if self.shadow is not None:
            self.shadow.stop()
        self.reporter.now.set()
        for t in self._threads:
            t.join(timeout=10)
        self.control.close()

    # -- the per-frame path ---------------------------------------------------------------------------
    def step(self, timeout: float = 0.5) -> FrameOutcome | None:
        done = self.inference.get(timeout)
        if done is None:
            return None
        item = done.item
        if item.error is not None:
            self.stats.count("rejected_frames")
            if item.raw.data is not None and formats.sniff(item.raw.data) is None:
                self.stats.count("rejected_unsupported_format")
            self.stats.error(f"frame {item.raw.name}: {item.error}")
            self.source.reject(item.raw, item.error)
            return None
        if done.error is not None:  # the frame stays in its source; run() logs and counts it
            raise RuntimeError(f"frame {item.raw.name}: {done.error}")
        return self.process(done)

    def process(self, done: Inferred) -> FrameOutcome | None:
        """Everything after ``session.run`` for one frame (it runs while the next frame is in the session): store its
        result (and feedback image) in the outbox; None when the outbox refused the write: the frame goes back to its
        source for a later try."""
        item, model, tensor, lb = done.item, done.model, done.tensor, done.letterbox
        assert model is not None and done.output is not None and tensor is not None and lb is not None
        assert item.rgb is not None
        t_post = time.perf_counter()
        dets = boxes_from_output(model, done.output, lb, self.decode_threshold)
        scores = dets[:, 4] if dets.shape[0] else np.zeros(0, dtype=np.float32)
        shown = dets[scores > self.settings.conf_threshold] if dets.shape[0] else dets
        verdict = self._verdict(shown)
        decision = self.sampler.decide(scores)
        frame = item.raw
        latency = {
            "read": round(item.read_ms, 3),
            "preprocess": round(done.preprocess_ms, 3),
            "infer": round(done.infer_ms, 3),
            "postprocess": 0.0,
        }
        message = {
            "thing": self.thing,
            "frame_id": frame.frame_id,
            "source": frame.name,
            "timestamp": utc_now(),
            "model_version": model.version,
            "model_precision": model.precision,
            "image": {"width": lb.src_w, "height": lb.src_h},
            "boxes": [
                {
                    "class_id": int(c),
                    "class_name": model.class_name(int(c)),
                    "confidence": round(float(s), 4),
                    "xyxy": [round(float(v), 1) for v in (x1, y1, x2, y2)],
                }
                for x1, y1, x2, y2, s, c in shown.tolist()
            ],
            "verdict": verdict,
            "max_confidence": round(decision.max_confidence, 4),
            "uncertain": decision.uncertain,
            "latency_ms": latency,
        }
        latency["postprocess"] = round((time.perf_counter() - t_post) * 1000, 3)
        latency["total"] = round(sum(latency.values()), 3)
        payload = encode(message)
        entries = [(RESULTS, {"topic": self.cfg.topic("inference")}, payload)]
        if decision.uncertain:
            if not self.feedback_on:
                self.stats.count("feedback_not_configured")
            elif decision.send:
                entries.append(
                    feedback_entry(self.cfg, self.thing, frame, item.rgb, model.version, decision, message["boxes"])
                )
            else:
                self.stats.count(f"feedback_limited_{decision.limited_by}")
        try:
            try:
                removed = self.outbox.put_many(entries)  # the result and its image: both stored, or neither
            except EntryTooLarge as exc:  # an image larger than the whole budget: the result alone is kept
                if len(entries) == 1:
                    raise
                log.warning("feedback image of %s not queued: %s", frame.name, exc)
                self.stats.count("feedback_too_large")
                entries = entries[:1]
                removed = self.outbox.put_many(entries)
        except OutboxError as exc:
            self._outbox_refused(frame, exc)
            return None
        if self._outbox_failing:
            log.info("outbox writable again")
            self._outbox_failing = False
        for queue, n in removed.items():
            if n:
                self.stats.count(f"outbox_dropped_{queue}", n)
        sampled = len(entries) > 1
        if sampled:
            self.stats.count("feedback_queued")
        self.source.done(frame)
        self.stats.frame(
            latency["total"],
            (latency["read"], latency["preprocess"], latency["infer"], latency["postprocess"]),
            float(shown[:, 4].max()) if shown.shape[0] else 0.0,
            decision.uncertain,
            model.version,
        )
        shadow = self.shadow
        if shadow is not None:  # after the result is stored: the candidate never delays or changes it
            shadow.observe(
                item.rgb,
                tensor,
                lb,
                shown,
                verdict == "defect",
                decision.uncertain,
                self.decode_threshold,
                self.settings.conf_threshold,
                lambda boxes: self._verdict(boxes) == "defect",
                self.sampler.is_uncertain,
            )
        return FrameOutcome(frame.frame_id, message, decision.uncertain, sampled)

    def _verdict(self, boxes: np.ndarray) -> str:
        for row in boxes:
            if row[4] >= self.verdict_min and (not self.defect_classes or int(row[5]) in self.defect_classes):
                return "defect"
        return "pass"

    def _outbox_refused(self, frame: RawFrame, exc: OutboxError) -> None:
        """The outbox could not store this frame's result (a full disk): nothing of it was stored, the frame goes
        back to its source (a file stays in the folder and is read again) and the loop waits before the next."""
        self.stats.count("outbox_write_failures")
        self.stats.error(f"outbox: {exc}")
        if not self._outbox_failing:
            log.error("%s; frames stay in their source until it is writable again", exc)
            self._outbox_failing = True
        self.source.release(frame)
        self._stop.wait(self.cfg.get("outbox.retrySeconds"))

    # -- health (loupe_edge.health) -------------------------------------------------------------------
    def health(self, reset: bool = True) -> dict:
        return self.reporter.snapshot(reset)

    def publish_health(self) -> bool:
        return self.reporter.publish()
