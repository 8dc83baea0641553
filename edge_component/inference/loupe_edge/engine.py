"""The per-frame inference path: decode → letterbox → onnxruntime → decode/NMS → boxes in source pixels.

``Prefetcher`` runs reading, decoding and letterboxing of the next frame in a background thread while the current
frame is in ``session.run`` (onnxruntime releases the GIL), so the camera/file I/O and preprocessing overlap the
model's compute.  Tensors live in a small ring of preallocated buffers, so nothing is copied between the stages.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from loupe_edge.imaging import ImageRejected, Letterbox, Preprocessor, open_image
from loupe_edge.model import LoadedModel
from loupe_edge.postprocess import decode_yolo
from loupe_edge.sources import FrameSource, RawFrame

log = logging.getLogger(__name__)

RING = 3  # buffers in flight: one being filled, one queued, one in inference


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

    def __init__(self, max_pixels: int = 40_000_000) -> None:
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
            ring = self._rings[size] = [Preprocessor(size[0], size[1]) for _ in range(RING)]
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


def run_model(model: LoadedModel, tensor: np.ndarray, lb: Letterbox, decode_threshold: float) -> Inference:
    t0 = time.perf_counter()
    out = model.infer(tensor)
    t1 = time.perf_counter()
    s = model.settings
    dets = decode_yolo(out, decode_threshold, s.iou_threshold, s.max_detections)
    if dets.shape[0]:
        dets[:, :4] = lb.to_source(dets[:, :4])
    t2 = time.perf_counter()
    return Inference(dets, (t1 - t0) * 1000, (t2 - t1) * 1000)


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
            while not self._stop.is_set():
                try:
                    self.queue.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def get(self, timeout: float) -> Prepared | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
