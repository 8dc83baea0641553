"""The inference component: frames in, results and feedback out, never losing either within the outbox bound.

Threads: a prefetch stage (read, decode, letterbox), an inference stage (``session.run``, one frame ahead), the
frame loop (this module's :meth:`EdgeApp.step`: decode/NMS, result, feedback, shadow), one sender per outbox queue
(results → MQTT, uploads → S3 then MQTT), a health publisher and a model watcher.
Everything that leaves the device passes through the disk outbox first; a frame leaves its source only after its
result (and, if sampled, its image) is in the outbox.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from loupe_edge.config import Config
from loupe_edge.engine import InferenceStage, Inferred, Prefetcher, Preparer, boxes_from_output, run_model
from loupe_edge.feedback import FeedbackSampler
from loupe_edge.manager import ModelManager, ModelSource
from loupe_edge.model import LoadedModel, ModelError, ModelSettings, load_model
from loupe_edge.sources import FrameSource, RawFrame, make_source
from loupe_edge.stats import ShadowStats, WindowStats
from loupe_edge.transport import Control, Transport, TransportError, Uploader

log = logging.getLogger(__name__)

RESULTS = "results"
UPLOADS = "uploads"
MAX_MESSAGE_BYTES = 120 * 1024  # below AWS IoT Core's 128 KB limit, with room for MQTT framing
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "tif": "image/tiff", "webp": "image/webp"}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        self._local_preparer = Preparer(cfg.get("source.maxPixels"))  # main-thread re-letterboxing (shadow)
        self.prefetch = Prefetcher(self.source, self.preparer, self._input_size)
        self.inference = InferenceStage(
            self.prefetch, lambda: self.manager.current, Preparer(cfg.get("source.maxPixels"))
        )
        self._apply_runtime_config(cfg)
        self.shadow_stats = ShadowStats()
        self.shadow: LoadedModel | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._health_now = threading.Event()
        self.started = time.monotonic()

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
            day_bump=lambda day: self.outbox.bump(f"feedback:{day}"),
            criterion=fb["criterion"],
        )
        self.decode_threshold = min(m["confThreshold"], fb["bandLow"]) if fb["enabled"] else m["confThreshold"]

    def reconfigure(self, cfg: Config) -> None:
        for problem in cfg.problems:
            log.error("configuration: %s", problem)
            self.stats.error(f"config: {problem}")
        self._apply_runtime_config(cfg)
        self.cfg = cfg
        log.info("configuration updated (thresholds, verdict and feedback applied; other keys need a restart)")

    # -- model events ---------------------------------------------------------------------------------
    def _input_size(self) -> tuple[int, int] | None:
        model = self.manager.current
        return (model.input_w, model.input_h) if model is not None else None

    def _on_swap(self, old: LoadedModel | None, new: LoadedModel) -> None:
        self.stats.count("model_swaps")
        self._write_status("RUNNING", None)
        self.control.report(True)
        self._health_now.set()

    def _on_model_failure(self, reason: str) -> None:
        self.stats.error(f"model: {reason}")
        self.stats.count("model_failures")
        self._write_status("ERRORED", reason)
        if self.cfg.get("model.reportFailure"):
            self.control.report(False, reason)
        self._health_now.set()

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
        if self.cfg.get("shadow.enabled"):
            self._spawn("loupe-shadow-load", self._load_shadow)
        self._spawn("loupe-send-results", self._send_results)
        self._spawn("loupe-send-uploads", self._send_uploads)
        self._spawn("loupe-health", self._health_loop)
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
        self._health_now.set()
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
            self.stats.error(f"frame {item.raw.name}: {item.error}")
            self.source.reject(item.raw, item.error)
            return None
        if done.error is not None:  # the frame stays in its source; run() logs and counts it
            raise RuntimeError(f"frame {item.raw.name}: {done.error}")
        return self.process(done)

    def process(self, done: Inferred) -> FrameOutcome:
        """Everything after ``session.run`` for one frame: runs while the next frame is in the session."""
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
        payload = self._encode(message)
        dropped = self.outbox.put(RESULTS, {"topic": self.cfg.topic("inference")}, payload)
        if dropped:
            self.stats.count("outbox_dropped_results", dropped)
        sampled = False
        if decision.uncertain:
            if not self.feedback_on:
                self.stats.count("feedback_not_configured")
            elif decision.send:
                sampled = self._queue_feedback(frame, item.rgb, model.version, decision)
            else:
                self.stats.count(f"feedback_limited_{decision.limited_by}")
        self.source.done(frame)
        self.stats.frame(
            latency["total"],
            (latency["read"], latency["preprocess"], latency["infer"], latency["postprocess"]),
            float(shown[:, 4].max()) if shown.shape[0] else 0.0,
            decision.uncertain,
        )
        if self.shadow is not None:
            self._run_shadow(item.rgb, tensor, lb, shown, verdict)
        return FrameOutcome(frame.frame_id, message, decision.uncertain, sampled)

    def _verdict(self, boxes: np.ndarray) -> str:
        for row in boxes:
            if row[4] >= self.verdict_min and (not self.defect_classes or int(row[5]) in self.defect_classes):
                return "defect"
        return "pass"

    @staticmethod
    def _encode(message: dict) -> bytes:
        payload = json.dumps(message, separators=(",", ":")).encode()
        if len(payload) <= MAX_MESSAGE_BYTES:
            return payload
        boxes = message["boxes"]
        keep = len(boxes)
        while keep and len(payload) > MAX_MESSAGE_BYTES:
            keep = keep * 3 // 4
            trimmed = dict(message, boxes=boxes[:keep], boxes_truncated=len(boxes) - keep)
            payload = json.dumps(trimmed, separators=(",", ":")).encode()
        return payload

    def _queue_feedback(self, frame: RawFrame, rgb: np.ndarray, version: str, decision) -> bool:
        fb = self.cfg.get("feedback")
        body, ext = frame.data, frame.ext
        if body is None:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
            body, ext = buf.getvalue(), "jpg"
        prefix = fb["prefix"].strip("/")
        key = f"{prefix}/{self.thing}/{frame.frame_id}.{ext}"
        announce = {
            "thing": self.thing,
            "bucket": fb["bucket"],
            "key": key,
            "frame_id": frame.frame_id,
            "model_version": version,
            "max_confidence": round(decision.max_confidence, 4),
            "reason": decision.reason,
            "timestamp": utc_now(),
        }
        meta = {
            "bucket": fb["bucket"],
            "key": key,
            "content_type": CONTENT_TYPES.get(ext, "application/octet-stream"),
            "metadata": {
                "device": self.thing,
                "model-version": version,
                "max-confidence": f"{decision.max_confidence:.4f}",
                "reason": decision.reason,
            },
            "topic": self.cfg.topic("lowConfidence"),
            "announce": announce,
        }
        dropped = self.outbox.put(UPLOADS, meta, body)
        if dropped:
            self.stats.count("outbox_dropped_uploads", dropped)
        self.stats.count("feedback_queued")
        return True

    # -- shadow ---------------------------------------------------------------------------------------
    def _load_shadow(self) -> None:
        sh = self.cfg.get("shadow")
        if not sh["dir"]:
            self.stats.error("config: shadow.enabled needs shadow.dir")
            return
        try:
            self.shadow = load_model(Path(sh["dir"]), model_settings(self.cfg, sh["precision"]))
            log.info("shadow model %s running beside production", self.shadow.version)
        except ModelError as exc:
            log.error("shadow model unusable: %s", exc)
            self.stats.error(f"shadow: {exc}")

    def _run_shadow(self, rgb, tensor, lb, prod: np.ndarray, verdict: str) -> None:
        shadow = self.shadow
        try:
            t0 = time.perf_counter()
            if tensor.shape[2:] != (shadow.input_h, shadow.input_w):
                tensor, lb = self._local_preparer.letterbox(rgb, (shadow.input_w, shadow.input_h))
            res = run_model(shadow, tensor, lb, self.settings.conf_threshold)
            ms = (time.perf_counter() - t0) * 1000
            self.shadow_stats.add(prod, res.boxes, verdict, self._verdict(res.boxes), ms)
        except Exception as exc:
            self.shadow_stats.errors += 1
            log.warning("shadow inference failed: %s", exc)

    # -- senders --------------------------------------------------------------------------------------
    def _backoff(self, what: str, exc: Exception, failing: bool) -> bool:
        if not failing:
            log.warning("%s delivery paused, will retry: %s", what, exc)
            self.stats.count(f"{what}_delivery_failures")
        self._stop.wait(self.cfg.get("outbox.retrySeconds"))
        return True

    def _send_results(self) -> None:
        failing = False
        while not self._stop.is_set():
            if not self.outbox.wait(RESULTS, 0.5):
                continue
            entries = self.outbox.peek(RESULTS, 50)
            try:
                n = self.transport.publish_many([(e.meta["topic"], e.body) for e in entries], timeout=10.0)
            except TransportError as exc:
                failing = self._backoff("results", exc, failing)
                continue
            if failing:
                log.info("results delivery resumed (%d queued)", self.outbox.depth(RESULTS))
                failing = False
            self.outbox.ack(entries[:n])

    def _send_uploads(self) -> None:
        failing = False
        while not self._stop.is_set():
            if not self.outbox.wait(UPLOADS, 0.5):
                continue
            entries = self.outbox.peek(UPLOADS, 1)
            if not entries:
                continue
            e = entries[0]
            m = e.meta
            try:
                if self.uploader is None:
                    raise TransportError("no S3 uploader configured")
                self.uploader.put(m["bucket"], m["key"], e.body, m["content_type"], m["metadata"])
                announce = json.dumps(m["announce"], separators=(",", ":")).encode()
                self.transport.publish_many([(m["topic"], announce)], timeout=10.0)
            except TransportError as exc:
                failing = self._backoff("uploads", exc, failing)
                continue
            if failing:
                log.info("feedback delivery resumed (%d queued)", self.outbox.depth(UPLOADS))
                failing = False
            self.outbox.ack([e])
            self.stats.count("feedback_sent")

    # -- health ---------------------------------------------------------------------------------------
    def health(self, reset: bool = True) -> dict:
        model = self.manager.current
        snap = self.stats.snapshot(reset=reset)
        counters = snap.pop("counters")
        return {
            "thing": self.thing,
            "timestamp": utc_now(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model_version": model.version if model else None,
            "model_precision": model.precision if model else None,
            "model_error": self.manager.last_error,
            **snap,
            "outbox": {"results": self.outbox.depth(RESULTS), "uploads": self.outbox.depth(UPLOADS)},
            "dropped": {
                "outbox_results": self.outbox.dropped(RESULTS),
                "outbox_uploads": self.outbox.dropped(UPLOADS),
                "rejected_frames": counters.get("rejected_frames", 0),
                "feedback_rate_limited": counters.get("feedback_limited_rate", 0),
                "feedback_daily_cap": counters.get("feedback_limited_daily-cap", 0),
                "health_unsent": counters.get("health_unsent", 0),
            },
            "counters": counters,
            "shadow": self.shadow_stats.snapshot(self.shadow.version) if self.shadow is not None else None,
        }

    def publish_health(self) -> bool:
        payload = json.dumps(self.health(), separators=(",", ":")).encode()
        try:
            self.transport.publish_many([(self.cfg.topic("health"), payload)], timeout=5.0)
            return True
        except TransportError:
            self.stats.count("health_unsent")
            return False

    def _health_loop(self) -> None:
        while not self._stop.is_set():
            self._health_now.wait(self.cfg.get("health.intervalSeconds"))
            self._health_now.clear()
            if self._stop.is_set():
                break
            self.publish_health()
