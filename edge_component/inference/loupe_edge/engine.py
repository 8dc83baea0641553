"""The per-frame inference path: decode → letterbox → onnxruntime → decode/NMS → boxes in source pixels.

Three stages, each in its own thread, one frame apart::

    Prefetcher (read, decode, letterbox: frame n+2) ─► InferenceStage (session.run: frame n+1) ─► caller (decode/NMS,
                                                                                                result, outbox: frame n)

onnxruntime, Pillow's decoders and numpy's loops release the GIL, so on a device with a core beside the inference
thread the preparation of the next frame and the bookkeeping of the previous one both overlap ``session.run``: the
per-frame cost approaches the session's own.  Tensors live in a ring of preallocated buffers (one per frame that can
be in flight), so nothing is copied between the stages; a frame is prepared once and its tensor feeds the
production model and, when its input size is the same, the shadow model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loupe_edge.config import MAX_PIXELS
from loupe_edge.imaging import ImageRejected, Letterbox, Preprocessor, open_image
from loupe_edge.model import LoadedModel
from loupe_edge.postprocess import decode_yolo
from loupe_edge.sources import FrameSource, RawFrame

log = logging.getLogger(__name__)

# Buffers in flight: one being filled, one queued for inference, one in session.run, one queued for the caller,
# one with the caller (production decode + the shadow model, which reads the same tensor), one spare.
RING = 6


@dataclass
class Prepared:
    raw: RawFrame
    rgb: np.ndarray | None = None
    tensor: np.ndarray | None = None
    letterbox: Letterbox | None = None
    read_ms: float = 0.0
    preprocess_ms: float = 0.0
    error: str | None = None


@dataclass
class Inference:
    boxes: np.ndarray  # (K, 6): x1 y1 x2 y2 score class, source pixels, every box above the decode threshold
    infer_ms: float
    postprocess_ms: float


class Preparer:
    """Decode + letterbox into a ring of buffers for a given model input size."""

    def __init__(self, max_pixels: int = MAX_PIXELS) -> None:
        self.max_pixels = max_pixels
        self._rings: dict[tuple[int, int], list[Preprocessor]] = {}
        self._next = 0

    def decode(self, raw: RawFrame) -> np.ndarray:
        if raw.rgb is not None:
            rgb = raw.rgb
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ImageRejected(f"frame array has shape {rgb.shape} / {rgb.dtype}, expected HxWx3 uint8")
            if rgb.shape[0] * rgb.shape[1] > self.max_pixels:
                raise ImageRejected(f"frame too large: {rgb.shape[1]}x{rgb.shape[0]}")
            return rgb
        im = open_image(raw.data or b"", self.max_pixels)
        return np.asarray(im)

    def letterbox(self, rgb: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
        ring = self._rings.get(size)
        if ring is None:
            shared: dict = {}  # one set of resize scratch buffers per source size for the whole ring
            ring = self._rings[size] = [Preprocessor(size[0], size[1], shared) for _ in range(RING)]
        self._next = (self._next + 1) % RING
        return ring[self._next](rgb)

    def prepare(self, raw: RawFrame, size: tuple[int, int]) -> Prepared:
        t0 = time.perf_counter()
        try:
            rgb = self.decode(raw)
        except ImageRejected as exc:
            return Prepared(raw, error=str(exc), read_ms=raw.read_ms)
        tensor, lb = self.letterbox(rgb, size)
        return Prepared(raw, rgb, tensor, lb, raw.read_ms, (time.perf_counter() - t0) * 1000)


def boxes_from_output(model: LoadedModel, out: np.ndarray, lb: Letterbox, decode_threshold: float) -> np.ndarray:
    """Decode + NMS of one raw model output, boxes mapped back to source pixels."""
    s = model.settings
    dets = decode_yolo(out, decode_threshold, s.iou_threshold, s.max_detections)
    if dets.shape[0]:
        dets[:, :4] = lb.to_source(dets[:, :4])
    return dets


def run_model(model: LoadedModel, tensor: np.ndarray, lb: Letterbox, decode_threshold: float) -> Inference:
    t0 = time.perf_counter()
    out = model.infer(tensor)
    t1 = time.perf_counter()
    dets = boxes_from_output(model, out, lb, decode_threshold)
    t2 = time.perf_counter()
    return Inference(dets, (t1 - t0) * 1000, (t2 - t1) * 1000)


def _hand_over(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    """Put ``item`` on a stage's bounded queue, waiting for room until the stage is stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.5)
            return
        except queue.Full:
            continue


def _take(q: queue.Queue[Any], timeout: float) -> Any | None:
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        return None


class Prefetcher:
    """Background stage: pull frames from the source and prepare them for the current model's input size."""

    def __init__(
        self,
        source: FrameSource,
        preparer: Preparer,
        input_size: Callable[[], tuple[int, int] | None],
        depth: int = 1,
    ) -> None:
        self.source = source
        self.preparer = preparer
        self.input_size = input_size
        self.queue: queue.Queue[Prepared] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loupe-prefetch", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            size = self.input_size()
            if size is None:  # no model yet: leave frames where they are
                self._stop.wait(0.2)
                continue
            try:
                raw = self.source.next(timeout=0.5)
            except Exception:
                self.failures += 1
                log.exception("frame source failed; retrying")
                self._stop.wait(1.0)
                continue
            if raw is None:
                continue
            try:
                item = self.preparer.prepare(raw, size)
            except Exception as exc:  # never let one frame kill the stage
                item = Prepared(raw, error=f"preprocessing failed: {exc!r}")
            _hand_over(self.queue, item, self._stop)

    def get(self, timeout: float) -> Prepared | None:
        return _take(self.queue, timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class Inferred:
    """A prepared frame after ``session.run`` of the production model (``output``), or why it has none."""

    item: Prepared
    model: LoadedModel | None = None
    output: np.ndarray | None = None
    tensor: np.ndarray | None = None
    letterbox: Letterbox | None = None
    preprocess_ms: float = 0.0
    infer_ms: float = 0.0
    error: str | None = None  # inference failed (the frame's own error, if any, is item.error)


class InferenceStage:
    """Background stage: ``session.run`` of the current model on prefetched frames, one frame ahead of the caller.

    The caller (the component's loop, the benchmark) takes :class:`Inferred` frames in order with :meth:`get` and
    does the decoding, NMS and bookkeeping of frame n while frame n+1 is in the session.  The model is read once
    per frame, so a hot swap takes effect between two frames.  A frame prepared for another input size (the model
    changed size since) is letterboxed again here, from its decoded pixels.
    """

    def __init__(
        self,
        prefetch: Prefetcher,
        current_model: Callable[[], LoadedModel | None],
        preparer: Preparer | None = None,
        depth: int = 1,
    ) -> None:
        self.prefetch = prefetch
        self.current_model = current_model
        self.preparer = preparer or Preparer()
        self.queue: queue.Queue[Inferred] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loupe-infer", daemon=True)

    def start(self) -> None:
        self.prefetch.start()
        self._thread.start()

    def infer(self, item: Prepared) -> Inferred:
        """Run the current model on one prepared frame (what the thread does; callable directly)."""
        if item.error is not None:
            return Inferred(item)
        model = self.current_model()
        while model is None and not self._stop.is_set():  # frames are only prefetched once a model exists
            self._stop.wait(0.05)
            model = self.current_model()
        if model is None:
            return Inferred(item, error="stopped before a model was loaded")
        tensor, lb, pre_ms = item.tensor, item.letterbox, item.preprocess_ms
        if tensor is None or lb is None or tensor.shape[2:] != (model.input_h, model.input_w):
            assert item.rgb is not None
            t0 = time.perf_counter()
            tensor, lb = self.preparer.letterbox(item.rgb, (model.input_w, model.input_h))
            pre_ms += (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        try:
            out = model.infer(tensor)
        except Exception as exc:  # a failing run is reported for this frame; the stage keeps going
            return Inferred(item, model, None, tensor, lb, pre_ms, error=f"inference failed: {exc!r}")
        return Inferred(item, model, out, tensor, lb, pre_ms, (time.perf_counter() - t0) * 1000)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.prefetch.get(0.5)
            if item is None:
                continue
            try:
                done = self.infer(item)
            except Exception as exc:  # never let one frame kill the stage
                done = Inferred(item, error=f"inference failed: {exc!r}")
            _hand_over(self.queue, done, self._stop)

    def get(self, timeout: float) -> Inferred | None:
        return _take(self.queue, timeout)

    def stop(self) -> None:
        self._stop.set()
        self.prefetch.stop()
        self._thread.join(timeout=5)
