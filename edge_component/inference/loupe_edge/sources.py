"""Frame sources behind one interface.

``DirectorySource`` watches a folder that a camera drops files into and hands over a file only once it is
complete (size and mtime unchanged for ``settleMs``); ``OpenCVSource`` reads a video file, RTSP stream or camera
device when OpenCV is installed.  A source yields :class:`RawFrame` objects; the caller decodes them and, once the
frame's result is safely in the outbox, calls :meth:`FrameSource.done` (or :meth:`FrameSource.reject` for
unusable input, :meth:`FrameSource.release` when the result could not be stored) so a frame leaves its source
only after nothing can be lost.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")


def new_frame_id(data: bytes | None, seq: int) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    tag = hashlib.sha256(data).hexdigest()[:12] if data else f"{seq:012d}"
    return f"{stamp}-{tag}"


@dataclass
class RawFrame:
    frame_id: str
    name: str  # file name or stream position, for logs
    data: bytes | None = None  # encoded bytes (directory source)
    rgb: np.ndarray | None = None  # decoded HWC uint8 RGB (video sources decode themselves)
    ext: str = "jpg"
    read_ms: float = 0.0
    ref: Any = None  # source-private handle (the path)
    extra: dict = field(default_factory=dict)


class FrameSource(Protocol):
    def next(self, timeout: float) -> RawFrame | None: ...

    def done(self, frame: RawFrame) -> None: ...

    def reject(self, frame: RawFrame, reason: str) -> None: ...

    def release(self, frame: RawFrame) -> None:
        """Not processed after all (its result could not be stored): hand it out again later if possible."""
        ...

    def close(self) -> None: ...


def sniff_ext(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


class DirectorySource:
    """Poll a folder; yield complete files oldest first; delete, move or keep them once processed."""

    def __init__(
        self,
        path: str | Path,
        poll_ms: int = 100,
        settle_ms: int = 250,
        after: str = "delete",
        processed_dir: str | Path | None = None,
        max_bytes: int = 20 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
        rejected_max_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.poll = poll_ms / 1000
        self.settle = settle_ms / 1000
        self.after = after
        self.processed_dir = Path(processed_dir) if processed_dir else self.path / ".processed"
        self.rejected_dir = self.path / ".rejected"
        self.max_bytes = max_bytes
        self.rejected_max_bytes = rejected_max_bytes
        self.pruned = 0  # rejected files deleted to keep .rejected/ within its byte budget
        self.clock = clock
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, first time stable)
        self._handed: set[str] = set()  # handed out, not yet done/rejected (or kept)
        self._ready: list[Path] = []
        self._seq = 0
        self._closed = threading.Event()

    def _scan(self) -> None:
        now = self.clock()
        present: set[str] = set()
        candidates: list[tuple[int, str, Path]] = []
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            self.path.mkdir(parents=True, exist_ok=True)
            return
        for e in entries:
            name = e.name
            if name.startswith(".") or name.endswith(TEMP_SUFFIXES) or name in self._handed:
                continue
            try:
                if not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            present.add(name)
            sig = (st.st_size, st.st_mtime_ns)
            prev = self._seen.get(name)
            if prev is None or prev[:2] != sig:
                self._seen[name] = (*sig, now)
                if self.settle > 0:
                    continue
                prev = self._seen[name]
            if st.st_size > 0 and now - prev[2] >= self.settle:
                candidates.append((st.st_mtime_ns, name, Path(e.path)))
        for gone in set(self._seen) - present:
            del self._seen[gone]
        candidates.sort()
        self._ready = [p for _, _, p in candidates]

    def next(self, timeout: float) -> RawFrame | None:
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            while self._ready:
                path = self._ready.pop(0)
                frame = self._read(path)
                if frame is not None:
                    return frame
            self._scan()
            if self._ready:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._closed.wait(min(self.poll, left))
        return None

    def _read(self, path: Path) -> RawFrame | None:
        name = path.name
        t0 = time.perf_counter()
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                frame = RawFrame(new_frame_id(None, self._seq), name, ref=path)
                self._handed.add(name)
                self.reject(frame, f"file is {size} bytes, above the {self.max_bytes}-byte limit")
                return None
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # removed by someone else between scan and read
        self._seq += 1
        self._handed.add(name)
        self._seen.pop(name, None)
        ext = sniff_ext(data) or (path.suffix.lstrip(".").lower() or "bin")
        return RawFrame(
            new_frame_id(data, self._seq),
            name,
            data=data,
            ext=ext,
            read_ms=(time.perf_counter() - t0) * 1000,
            ref=path,
        )

    def done(self, frame: RawFrame) -> None:
        path: Path = frame.ref
        try:
            if self.after == "delete":
                path.unlink(missing_ok=True)
            elif self.after == "move":
                self.processed_dir.mkdir(parents=True, exist_ok=True)
                shutil.move(os.fspath(path), os.fspath(self.processed_dir / path.name))
            else:
                return  # keep: stays in _handed so it is not processed again
        except OSError as exc:
            log.warning("could not %s processed frame %s: %s", self.after, path, exc)
        self._handed.discard(path.name)

    def reject(self, frame: RawFrame, reason: str) -> None:
        path: Path = frame.ref
        log.warning("rejected %s: %s (moved to %s)", path.name, reason, self.rejected_dir)
        try:
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(os.fspath(path), os.fspath(self.rejected_dir / path.name))
        except OSError as exc:
            log.warning("could not move rejected frame %s: %s", path, exc)
            return  # stays in _handed: never retried in this process
        self._handed.discard(path.name)
        self._prune_rejected()

    def _prune_rejected(self) -> None:
        """Keep ``.rejected/`` within its byte budget, deleting the oldest files first: a camera misconfigured to
        write another format must not fill the disk with refused frames."""
        files = []
        for e in os.scandir(self.rejected_dir):
            try:
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    files.append((st.st_mtime_ns, e.name, st.st_size))
            except FileNotFoundError:
                continue
        total = sum(size for _, _, size in files)
        for _, name, size in sorted(files):
            if total <= self.rejected_max_bytes:
                break
            try:
                (self.rejected_dir / name).unlink()
            except OSError as exc:
                log.warning("could not prune rejected frame %s: %s", name, exc)
                continue
            total -= size
            self.pruned += 1
            log.warning(
                "deleted rejected frame %s: %s is over its %d-byte budget",
                name,
                self.rejected_dir,
                self.rejected_max_bytes,
            )

    def release(self, frame: RawFrame) -> None:
        self._handed.discard(frame.ref.name)  # still in the folder: the next scans pick it up again

    def close(self) -> None:
        self._closed.set()


class OpenCVSource:
    """Frames from ``cv2.VideoCapture`` (file, RTSP URL, or device index), optionally sampled at ``fps``."""

    def __init__(self, uri: str, fps: float = 0.0, reconnect_s: float = 2.0) -> None:
        try:
            import cv2
        except ImportError as exc:  # pragma: no cover - depends on the device image
            raise RuntimeError("source.type=opencv needs OpenCV (pip install opencv-python-headless)") from exc
        self._cv2 = cv2
        self.uri = uri
        self.interval = 1.0 / fps if fps > 0 else 0.0
        self.reconnect_s = reconnect_s
        self._cap = None
        self._last = 0.0
        self._seq = 0
        self._closed = threading.Event()
        self._is_file = not uri.isdigit() and "://" not in uri

    def _open(self):
        target: Any = int(self.uri) if self.uri.isdigit() else self.uri
        cap = self._cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def next(self, timeout: float) -> RawFrame | None:
        deadline = time.monotonic() + timeout
        while not self._closed.is_set() and time.monotonic() < deadline:
            if self._cap is None:
                self._cap = self._open()
                if self._cap is None:
                    log.warning("cannot open video source %s; retrying in %.0fs", self.uri, self.reconnect_s)
                    self._closed.wait(min(self.reconnect_s, max(0.0, deadline - time.monotonic())))
                    continue
            if self.interval:
                wait = self._last + self.interval - time.monotonic()
                if wait > 0:
                    self._closed.wait(min(wait, max(0.0, deadline - time.monotonic())))
                    continue
            t0 = time.perf_counter()
            ok, bgr = self._cap.read()
            if not ok:
                self._cap.release()
                self._cap = None
                if self._is_file:
                    self._closed.set()  # end of the file
                    return None
                continue
            self._last = time.monotonic()
            self._seq += 1
            rgb = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
            return RawFrame(
                new_frame_id(None, self._seq),
                f"{self.uri}#{self._seq}",
                rgb=rgb,
                ext="jpg",
                read_ms=(time.perf_counter() - t0) * 1000,
            )
        return None

    def done(self, frame: RawFrame) -> None:
        return None

    def reject(self, frame: RawFrame, reason: str) -> None:
        log.warning("dropped video frame %s: %s", frame.name, reason)

    def release(self, frame: RawFrame) -> None:
        log.warning("dropped video frame %s: its result could not be stored", frame.name)  # a stream cannot rewind

    def close(self) -> None:
        self._closed.set()
        if self._cap is not None:
            self._cap.release()


class FileListSource:
    """A fixed list of files, read in order and left in place (batch runs, benchmarks)."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = list(paths)
        self._i = 0
        self.exhausted = threading.Event()

    def next(self, timeout: float) -> RawFrame | None:
        if self._i >= len(self._paths):
            self.exhausted.set()
            time.sleep(min(timeout, 0.05))
            return None
        path = self._paths[self._i]
        self._i += 1
        t0 = time.perf_counter()
        data = path.read_bytes()
        return RawFrame(
            f"{self._i:08d}",
            path.name,
            data=data,
            ext=sniff_ext(data) or "bin",
            read_ms=(time.perf_counter() - t0) * 1000,
            ref=path,
        )

    def done(self, frame: RawFrame) -> None:
        return None

    def reject(self, frame: RawFrame, reason: str) -> None:
        log.warning("skipped %s: %s", frame.name, reason)

    def release(self, frame: RawFrame) -> None:
        log.warning("skipped %s: its result could not be stored", frame.name)

    def close(self) -> None:
        self._i = len(self._paths)


def make_source(cfg: dict) -> FrameSource:
    kind = cfg["type"]
    if kind == "directory":
        if not cfg["path"]:
            raise ValueError("source.path is required for source.type=directory")
        return DirectorySource(
            cfg["path"],
            poll_ms=cfg["pollMs"],
            settle_ms=cfg["settleMs"],
            after=cfg["afterProcessing"],
            processed_dir=cfg["processedDir"] or None,
            max_bytes=cfg["maxFileBytes"],
            rejected_max_bytes=cfg["rejectedMaxBytes"],
        )
    if kind == "opencv":
        if not cfg["uri"]:
            raise ValueError("source.uri is required for source.type=opencv")
        return OpenCVSource(cfg["uri"], fps=cfg["fps"])
    raise ValueError(f"unknown source.type {kind!r}")
