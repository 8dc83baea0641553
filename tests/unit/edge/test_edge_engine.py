"""The inference stage: frames in order, one session run each, re-letterboxed for a model of another size."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from support.edge_helpers import brightness_for, grey_png, write_model

from loupe_edge.engine import InferenceStage, Prefetcher, Preparer
from loupe_edge.model import ModelSettings, load_model
from loupe_edge.sources import RawFrame


class ListSource:
    """Frames from memory, then nothing (what the stage sees between camera frames)."""

    def __init__(self, frames: list[RawFrame]) -> None:
        self.frames = list(frames)
        self._never = threading.Event()

    def next(self, timeout: float) -> RawFrame | None:
        if self.frames:
            return self.frames.pop(0)
        self._never.wait(timeout)  # a real source blocks up to ``timeout`` for the next frame
        return None


def frame(name: str, value: int) -> RawFrame:
    return RawFrame(name, name, data=grey_png(value), ext="png")


def test_frames_prepared_for_another_input_size_are_letterboxed_again(tmp_path: Path) -> None:
    small = load_model(write_model(tmp_path / "m32", "32", size=32), ModelSettings())
    item = Preparer().prepare(frame("a.png", brightness_for(0.9, 64)), (64, 64))  # prepared for a 64 px model
    stage = InferenceStage(Prefetcher(ListSource([]), Preparer(), lambda: (32, 32)), lambda: small)
    done = stage.infer(item)
    assert done.error is None and done.model is small
    assert done.tensor is not None and done.tensor.shape == (1, 3, 32, 32)
    assert done.letterbox is not None and (done.letterbox.dst_w, done.letterbox.dst_h) == (32, 32)
    assert done.output is not None and done.output.shape[0] == 1


def test_the_stage_keeps_frame_order_and_passes_rejections_through(tmp_path: Path) -> None:
    model = load_model(write_model(tmp_path / "m64", "1"), ModelSettings())
    frames = [frame("a.png", brightness_for(0.05, 64)), RawFrame("b", "b.png", data=b"not an image", ext="png")]
    frames.append(frame("c.png", brightness_for(0.9, 64)))
    stage = InferenceStage(Prefetcher(ListSource(frames), Preparer(), lambda: (64, 64)), lambda: model)
    stage.start()
    try:
        got = [stage.get(10) for _ in range(3)]
    finally:
        stage.stop()
    assert [d.item.raw.name for d in got if d is not None] == ["a.png", "b.png", "c.png"]
    a, b, c = got
    assert b.item.error and "unsupported format" in b.item.error and b.output is None
    # each frame's own output: c's brightness lights candidate 0 (0.9), a's does not (0.05)
    assert a.output[0, 4, 0] < 0.1 < 0.85 < c.output[0, 4, 0]
    assert not np.shares_memory(a.tensor, c.tensor)  # distinct ring slots for frames in flight
