"""The watched-folder source, model loading and verification, and hot swap in the model manager."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from support.edge_helpers import default_table, grey_png, write_model, write_pointer
from support.waiting import wait_until

from loupe_edge.manager import ModelManager, ModelSource
from loupe_edge.model import ModelError, ModelSettings, load_model, read_pointer
from loupe_edge.sources import DirectorySource, sniff_ext


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- directory source ---------------------------------------------------------------------------------------


def test_directory_source_waits_until_a_file_is_complete(tmp_path: Path) -> None:
    clock = Clock()
    src = DirectorySource(tmp_path, poll_ms=10, settle_ms=500, clock=clock)
    f = tmp_path / "a.png"
    f.write_bytes(grey_png(10)[:20])  # camera still writing
    assert src.next(0.05) is None
    clock.t += 0.3
    with f.open("ab") as fh:  # still growing
        fh.write(grey_png(10)[20:])
    assert src.next(0.05) is None
    clock.t += 0.3  # unchanged for only 0.3 s
    assert src.next(0.05) is None
    clock.t += 0.3
    frame = src.next(0.05)
    assert frame is not None and frame.name == "a.png" and frame.data == grey_png(10) and frame.ext == "png"
    assert src.next(0.05) is None  # handed out once


def test_directory_source_order_skips_and_after_processing(tmp_path: Path) -> None:
    src = DirectorySource(tmp_path, poll_ms=10, settle_ms=0, after="move")
    for i, name in enumerate(["b.png", "a.png", ".hidden.png", "c.png.part", "empty.png"]):
        (tmp_path / name).write_bytes(grey_png(i) if name != "empty.png" else b"")
        os.utime(tmp_path / name, ns=(1_000_000_000 * (i + 1), 1_000_000_000 * (i + 1)))
    names = []
    while (frame := src.next(0.05)) is not None:
        names.append(frame.name)
        src.done(frame)
    assert names == ["b.png", "a.png"]  # oldest first; hidden, partial-download and empty files wait
    assert sorted(p.name for p in (tmp_path / ".processed").iterdir()) == ["a.png", "b.png"]


def test_directory_source_rejects_oversized_files_and_keep_mode(tmp_path: Path) -> None:
    src = DirectorySource(tmp_path, poll_ms=10, settle_ms=0, after="keep", max_bytes=2048)
    (tmp_path / "big.bin").write_bytes(b"\xff\xd8\xff" + b"0" * 5000)
    (tmp_path / "ok.png").write_bytes(grey_png(1))
    frame = src.next(0.05)
    assert frame is not None and frame.name == "ok.png"
    src.done(frame)
    assert src.next(0.05) is None  # kept files are not processed twice
    assert (tmp_path / "ok.png").exists()
    assert (tmp_path / ".rejected" / "big.bin").exists()


def test_rejected_files_are_kept_within_a_byte_budget_oldest_deleted_first(tmp_path: Path) -> None:
    src = DirectorySource(tmp_path, poll_ms=10, settle_ms=0, max_bytes=1500, rejected_max_bytes=5000)
    for i in range(5):
        f = tmp_path / f"big{i}.bin"
        f.write_bytes(bytes([i]) * 2000)
        os.utime(f, ns=(1_000_000_000 * (i + 1), 1_000_000_000 * (i + 1)))
    assert src.next(0.05) is None  # every file is over max_bytes: all rejected
    assert sorted(p.name for p in (tmp_path / ".rejected").iterdir()) == ["big3.bin", "big4.bin"]
    assert src.pruned == 3


def test_sniff_ext_reads_content_not_names() -> None:
    assert sniff_ext(grey_png(3)) == "png"
    assert sniff_ext(b"\xff\xd8\xff\xe0rest") == "jpg"
    assert sniff_ext(b"hello") is None


# -- model loading ------------------------------------------------------------------------------------------


def test_load_model_reads_card_and_checks_shape(tmp_path: Path) -> None:
    write_model(tmp_path / "m", "7", size=64, nc=2, table=default_table(64, nc=2))
    model = load_model(tmp_path / "m", ModelSettings())
    assert model.version == "7" and (model.input_w, model.input_h) == (64, 64)
    assert model.class_name(0) == "scratch" and model.class_name(1) == "class1" and model.class_name(5) == "5"
    raw = model.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert raw.shape == (1, 6, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"corrupt": True}, "digest mismatch|not a loadable ONNX"),
        ({"wrong_digest": True}, "digest mismatch"),
    ],
)
def test_load_model_refuses_bad_models(tmp_path: Path, kwargs: dict, message: str) -> None:
    write_model(tmp_path / "m", "1", **kwargs)
    with pytest.raises(ModelError, match=message):
        load_model(tmp_path / "m", ModelSettings())


def test_corrupt_file_with_matching_digest_fails_to_load(tmp_path: Path) -> None:
    write_model(tmp_path / "m", "1", corrupt=True)  # card digest is the corrupt file's: only loading catches it
    with pytest.raises(ModelError, match="not a loadable ONNX"):
        load_model(tmp_path / "m", ModelSettings())


def test_load_model_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model_card.json"):
        load_model(tmp_path, ModelSettings())
    write_model(tmp_path / "m", "1")
    (tmp_path / "m" / "model.onnx").unlink()
    with pytest.raises(ModelError, match="missing"):
        load_model(tmp_path / "m", ModelSettings())


def test_class_count_must_match_card(tmp_path: Path) -> None:
    write_model(tmp_path / "m", "1", nc=1, table=default_table(64, nc=2))
    with pytest.raises(ModelError, match="2 classes, model card names 1"):
        load_model(tmp_path / "m", ModelSettings())


def test_int8_selection_and_fallback(tmp_path: Path) -> None:
    write_model(tmp_path / "with", "1", int8=True)
    write_model(tmp_path / "without", "2")
    assert load_model(tmp_path / "with", ModelSettings(precision="int8")).precision == "int8"
    assert load_model(tmp_path / "without", ModelSettings(precision="int8")).precision == "fp32"


def test_archive_subfolder_and_pointer_digests(tmp_path: Path) -> None:
    write_model(tmp_path / "decompressed" / "model", "3")
    card = json.loads((tmp_path / "decompressed" / "model" / "model_card.json").read_text())
    pointer = tmp_path / "work" / "com.loupe.model" / "current.json"
    pointer.parent.mkdir(parents=True)
    pointer.write_text(json.dumps({"dir": str(tmp_path / "decompressed"), "version": "3", "sha256": card["sha256"]}))
    folder, version, digests = read_pointer(pointer)
    model = load_model(folder, ModelSettings(), expected_version=version, expected_digests=digests)
    assert model.version == "3"
    with pytest.raises(ModelError, match="deployment registered sha256"):
        load_model(folder, ModelSettings(), expected_digests={"model.onnx": "ab" * 32})


# -- hot swap -----------------------------------------------------------------------------------------------


def test_manager_swaps_on_pointer_change_and_keeps_old_on_failure(tmp_path: Path) -> None:
    pointer = tmp_path / "work" / "com.loupe.model" / "current.json"
    write_pointer(pointer, write_model(tmp_path / "v1", "1"), "1")
    swaps, failures = [], []
    mgr = ModelManager(
        ModelSource(pointer=pointer),
        ModelSettings(),
        state_dir=tmp_path / "state",
        on_swap=lambda old, new: swaps.append((old and old.version, new.version)),
        on_failure=failures.append,
    )
    assert mgr.check() is True and mgr.current.version == "1"
    assert mgr.check() is False  # nothing changed: no reload
    write_pointer(pointer, write_model(tmp_path / "v2", "2"), "2")
    assert mgr.check() is True and mgr.current.version == "2"
    write_pointer(pointer, write_model(tmp_path / "v3", "3", corrupt=True), "3")
    assert mgr.check() is False
    assert mgr.current.version == "2"  # the old model keeps serving
    assert len(failures) == 1 and failures[0].startswith("model 3: model.onnx is not a loadable ONNX model")
    assert mgr.check() is False and len(failures) == 1  # the same broken model is reported once
    assert swaps == [(None, "1"), ("1", "2")]
    assert json.loads((tmp_path / "state" / "models" / "last-good" / "model_card.json").read_text())["version"] == "2"


def test_manager_serves_last_good_when_started_with_a_broken_model(tmp_path: Path) -> None:
    state = tmp_path / "state"
    good = ModelManager(ModelSource(folder=write_model(tmp_path / "v1", "1")), ModelSettings(), state_dir=state)
    assert good.check()
    failures = []
    broken = ModelManager(
        ModelSource(folder=write_model(tmp_path / "v2", "2", wrong_digest=True)),
        ModelSettings(),
        state_dir=state,
        on_failure=failures.append,
    )
    assert broken.check() is False
    assert broken.current is not None and broken.current.version == "1"
    assert failures and "digest mismatch" in failures[0]


def test_manager_missing_pointer_is_a_clear_failure(tmp_path: Path) -> None:
    failures = []
    mgr = ModelManager(ModelSource(pointer=tmp_path / "nope.json"), ModelSettings(), on_failure=failures.append)
    assert mgr.check() is False and mgr.current is None
    assert "is com.loupe.model deployed" in failures[0]


def test_background_watcher_picks_up_a_notification(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_model(folder, "1")
    mgr = ModelManager(ModelSource(folder=folder), ModelSettings())
    mgr.check()
    mgr.start(poll_seconds=3600)  # only a notification can trigger the check
    try:
        write_model(folder, "2", table=default_table(64, base=0.05))
        mgr.notify("test")
        assert wait_until(lambda: mgr.current.version == "2", 10, 0.02)
    finally:
        mgr.stop()


def test_opencv_source_reads_a_video_file(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2", reason="the video source needs OpenCV, an optional device dependency")
    from loupe_edge.sources import OpenCVSource

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), (10 * i, 0, 200), np.uint8))  # BGR: red-ish
    writer.release()
    src = OpenCVSource(str(path))
    frames = []
    while (f := src.next(1.0)) is not None:
        frames.append(f)
    assert len(frames) == 5
    assert frames[0].rgb.shape == (48, 64, 3) and frames[0].rgb[..., 0].mean() > 150  # converted to RGB
    assert len({f.frame_id for f in frames}) == 5


def test_training_pipeline_card_format_and_versions(tmp_path: Path) -> None:
    """The training pipeline's card (loupe-model-card/1) has digests under artifacts and no version: the
    deployment's version (from the pointer) names the model; without one, the content does."""
    folder = write_model(tmp_path / "m", "ignored")
    flat = json.loads((folder / "model_card.json").read_text())
    card = {
        "format": "loupe-model-card/1",
        "class_map": {"0": "scratch"},
        "input": {"imgsz": 64},
        "artifacts": {"model.onnx": {"file": "model.onnx", "sha256": flat["sha256"]["model.onnx"], "bytes": 1}},
    }
    (folder / "model_card.json").write_text(json.dumps(card))
    assert load_model(folder, ModelSettings(), expected_version="12").version == "12"
    unnamed = load_model(folder, ModelSettings())
    assert unnamed.version == "sha256-" + flat["sha256"]["model.onnx"][:12]
    assert unnamed.card.imgsz == 64
    card["artifacts"]["model.onnx"]["sha256"] = "f" * 64
    (folder / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="digest mismatch"):
        load_model(folder, ModelSettings())


def test_last_good_copy_keeps_the_deployment_version(tmp_path: Path) -> None:
    pointer = tmp_path / "work" / "com.loupe.model" / "current.json"
    write_pointer(pointer, write_model(tmp_path / "v1", "card-says-1"), "deployed-1")
    mgr = ModelManager(ModelSource(pointer=pointer), ModelSettings(), state_dir=tmp_path / "state")
    assert mgr.check() and mgr.current.version == "deployed-1"
    write_pointer(pointer, tmp_path / "gone", "deployed-2")
    restarted = ModelManager(ModelSource(pointer=pointer), ModelSettings(), state_dir=tmp_path / "state")
    assert restarted.check() is False
    assert restarted.current.version == "deployed-1"  # served from last-good, under its deployed version
