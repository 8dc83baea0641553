"""The component end to end in one process, with a fake Greengrass IPC client and a fake S3 uploader."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from support.edge_helpers import brightness_for, default_table, grey_image, grey_png, write_model, write_pointer
from support.outbox_faults import deny_deletes, fill_disk, free_disk
from support.waiting import wait_until

from loupe_edge.app import EdgeApp
from loupe_edge.config import validate
from loupe_edge.engine import Preparer
from loupe_edge.formats import sniff
from loupe_edge.model import LoadedModel
from loupe_edge.outbox import Outbox
from loupe_edge.results import MAX_MESSAGE_BYTES, RESULTS, UPLOADS, encode
from loupe_edge.transport import IpcControl, IpcTransport, TransportError

THING = "line-1"


class FakeIpcClient:
    """Records what the component asks of Greengrass; ``fail_publish`` simulates the nucleus refusing."""

    def __init__(self, config: dict | None = None) -> None:
        self.published: list[tuple[str, str, bytes]] = []
        self.states: list[str] = []
        self.deferred: list[tuple[str, int]] = []
        self.component_handler = None
        self.config_handlers: dict = {}
        self.config = config or {}
        self.fail_publish = False
        self.lock = threading.Lock()

    def publish_to_iot_core(self, *, topic_name, qos, payload):
        if self.fail_publish:
            raise RuntimeError("nucleus unavailable")
        with self.lock:
            self.published.append((topic_name, qos, payload))

    def subscribe_to_component_updates(self, *, on_stream_event, on_stream_error=None):
        self.component_handler = on_stream_event
        return None, SimpleNamespace(close=lambda: None)

    def subscribe_to_configuration_update(self, *, component_name=None, key_path=None, on_stream_event, **_):
        self.config_handlers[component_name] = on_stream_event
        return None, SimpleNamespace(close=lambda: None)

    def defer_component_update(self, *, deployment_id, message=None, recheck_after_ms=None):
        self.deferred.append((deployment_id, recheck_after_ms))

    def get_configuration(self, *, component_name=None, key_path=None):
        return SimpleNamespace(value={"settings": self.config})

    def update_state(self, *, state):
        self.states.append(state)

    def close(self):
        return None

    def messages(self, topic_suffix: str) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, _, p in self.published if t.endswith(topic_suffix)]


class FakeUploader:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str, dict]] = {}
        self.fail = False

    def put(self, bucket, key, body, content_type, metadata):
        if self.fail:
            raise TransportError("S3 unreachable")
        self.objects[(bucket, key)] = (body, content_type, metadata)


@pytest.fixture
def rig(tmp_path: Path):
    made = []

    def make(extra: dict | None = None, model_version: str = "1", pointer: bool = True, max_bytes: int | None = None):
        work = tmp_path / "work" / "com.loupe.inference"
        frames = tmp_path / "frames"
        ptr = work.parent / "com.loupe.model" / "current.json"
        if pointer:
            write_pointer(ptr, write_model(tmp_path / f"model-{model_version}", model_version), model_version)
        raw = {
            "thingName": THING,
            "workDir": str(work),
            "source": {"path": str(frames), "settleMs": 0, "pollMs": 10},
            "feedback": {"bucket": "raw-bucket", "maxPerMinute": 100},
            "health": {"intervalSeconds": 3600},
            "outbox": {"retrySeconds": 0.05},
            "model": {"pollSeconds": 3600},
        }
        for k, v in (extra or {}).items():
            raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
        cfg = validate(raw)
        ipc = FakeIpcClient()
        uploader = FakeUploader()
        outbox = Outbox(
            work / "outbox.sqlite",
            {RESULTS: cfg.get("outbox.maxMessages"), UPLOADS: 50},
            max_bytes=max_bytes or cfg.get("outbox.maxBytes"),
        )
        app = EdgeApp(cfg, IpcTransport(ipc), IpcControl(ipc), outbox, uploader=uploader)
        made.append((app, outbox))
        return SimpleNamespace(app=app, ipc=ipc, uploader=uploader, outbox=outbox, frames=frames, pointer=ptr)

    yield make
    for app, outbox in made:
        app.stop()
        outbox.close()


def drop(frames: Path, name: str, score: float, size: int = 64) -> None:
    frames.mkdir(parents=True, exist_ok=True)
    tmp = frames / f".{name}.tmp"
    tmp.write_bytes(grey_png(brightness_for(score, size)))
    tmp.rename(frames / name)


def pre_update(deployment: str) -> SimpleNamespace:
    return SimpleNamespace(pre_update_event=SimpleNamespace(deployment_id=deployment), post_update_event=None)


def post_update(deployment: str) -> SimpleNamespace:
    return SimpleNamespace(pre_update_event=None, post_update_event=SimpleNamespace(deployment_id=deployment))


def run_until(app: EdgeApp, n: int, timeout: float = 20.0) -> list:
    outcomes = []
    deadline = time.monotonic() + timeout
    while len(outcomes) < n and time.monotonic() < deadline:
        o = app.step(0.2)
        if o is not None:
            outcomes.append(o)
    return outcomes


def wait_for(pred, timeout: float = 10.0) -> bool:
    return bool(wait_until(pred, timeout, interval=0.02))


def test_results_feedback_and_health(rig) -> None:
    r = rig()
    r.app.start()
    drop(r.frames, "a.png", 0.05)  # only the fixed 0.9 box: confident
    drop(r.frames, "b.png", 0.45)  # a detection inside the band: uncertain
    outcomes = run_until(r.app, 2)
    assert [o.uncertain for o in outcomes] == [False, True]
    assert wait_for(lambda: len(r.ipc.messages("/inference")) == 2 and r.uploader.objects)
    first, second = r.ipc.messages("/inference")
    assert first["thing"] == THING and first["model_version"] == "1" and first["verdict"] == "defect"
    assert [b["confidence"] for b in first["boxes"]] == [0.9]  # the 0.8 twin was suppressed by NMS
    box = first["boxes"][0]
    assert box["class_name"] == "scratch" and box["class_id"] == 0
    assert box["xyxy"] == pytest.approx([38.4, 38.4, 51.2, 51.2], abs=0.2)  # source pixels
    assert set(first["latency_ms"]) == {"read", "preprocess", "infer", "postprocess", "total"}
    assert sorted(b["confidence"] for b in second["boxes"]) == pytest.approx([0.45, 0.9], abs=0.01)
    assert all(qos == "1" for _, qos, _ in r.ipc.published)  # QoS 1 (AT_LEAST_ONCE)

    ((bucket, key), (body, ctype, meta)) = next(iter(r.uploader.objects.items()))
    assert bucket == "raw-bucket" and key == f"raw/feedback/{THING}/{second['frame_id']}.png"
    assert ctype == "image/png" and body == grey_png(brightness_for(0.45, 64))
    boxes = meta.pop("boxes")
    assert meta == {"device": THING, "model-version": "1", "max-confidence": "0.9000", "reason": "confidence-band"}
    # the boxes the device found travel with the frame (the console's Fleet page draws them), most confident first
    sent = sorted(second["boxes"], key=lambda b: -b["confidence"])
    assert json.loads(boxes) == [[b["class_id"], b["confidence"], *b["xyxy"]] for b in sent]
    assert wait_for(lambda: r.ipc.messages("/low-confidence"))
    (announce,) = r.ipc.messages("/low-confidence")
    assert set(announce) == {
        "thing",
        "bucket",
        "key",
        "frame_id",
        "model_version",
        "max_confidence",
        "reason",
        "timestamp",
    }
    assert announce["key"] == key and announce["frame_id"] == second["frame_id"]
    assert not any(p.suffix == ".png" for p in r.frames.iterdir())  # processed frames left the folder

    assert r.app.publish_health()
    health = r.ipc.messages("/health")[-1]
    assert health["model_version"] == "1" and health["frames"] == 2 and health["uncertain_share"] == 0.5
    assert health["mean_top_confidence"] == pytest.approx(0.9)
    assert health["outbox"] == {"results": 0, "uploads": 0}
    assert health["latency_ms"]["p50"] is not None


def test_nothing_is_lost_while_the_network_is_down(rig) -> None:
    r = rig()
    r.app.start()
    r.ipc.fail_publish = True
    r.uploader.fail = True
    for i in range(6):
        drop(r.frames, f"f{i}.png", 0.45 if i % 2 else 0.05)
    assert len(run_until(r.app, 6)) == 6
    assert wait_for(lambda: r.outbox.depth(RESULTS) == 6 and r.outbox.depth(UPLOADS) == 3)
    assert not r.ipc.messages("/inference") and not r.uploader.objects
    r.ipc.fail_publish = False
    r.uploader.fail = False
    assert wait_for(lambda: len(r.ipc.messages("/inference")) == 6 and len(r.ipc.messages("/low-confidence")) == 3)
    assert [m["source"] for m in r.ipc.messages("/inference")] == [f"f{i}.png" for i in range(6)]  # in order
    assert len(r.uploader.objects) == 3
    assert r.app.stats.counters["results_delivery_failures"] >= 1


def test_rejected_frames_are_moved_aside_and_counted(rig) -> None:
    r = rig()
    r.app.start()
    r.frames.mkdir(parents=True, exist_ok=True)
    (r.frames / "notes.txt").write_bytes(b"not an image at all")
    drop(r.frames, "ok.png", 0.05)
    assert len(run_until(r.app, 1)) == 1
    assert wait_for(lambda: (r.frames / ".rejected" / "notes.txt").exists())
    health = r.app.health()
    assert health["dropped"]["rejected_frames"] == 1
    assert any("notes.txt" in e for e in health["errors"]["recent"])


def drop_bytes(frames: Path, name: str, data: bytes) -> None:
    frames.mkdir(parents=True, exist_ok=True)
    tmp = frames / f".{name}.tmp"
    tmp.write_bytes(data)
    tmp.rename(frames / name)


def step_until(app: EdgeApp, pred, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        app.step(0.1)
    return bool(pred())


def test_frames_in_other_formats_are_refused_counted_and_never_uploaded(rig) -> None:
    r = rig()
    r.app.start()
    uncertain = brightness_for(0.45, 64)  # decoded, each of these would be an uncertain frame worth uploading
    for fmt, name in (("BMP", "a.bmp"), ("TIFF", "b.tif"), ("GIF", "c.gif"), ("EPS", "d.jpg")):
        drop_bytes(r.frames, name, grey_image(uncertain, fmt))  # d.jpg is PostScript: content decides, not names
    drop(r.frames, "e.png", 0.45)
    (outcome,) = run_until(r.app, 1)
    assert outcome.uncertain and outcome.sampled
    rejected = r.frames / ".rejected"
    assert wait_for(lambda: {p.name for p in rejected.iterdir()} == {"a.bmp", "b.tif", "c.gif", "d.jpg"})
    assert wait_for(lambda: len(r.uploader.objects) == 1)
    ((_, key), (body, ctype, _)) = next(iter(r.uploader.objects.items()))
    assert key.endswith(".png") and ctype == "image/png" and sniff(body) == "png"
    health = r.app.health()
    assert health["dropped"]["rejected_frames"] == 4 and health["counters"]["rejected_unsupported_format"] == 4
    recent = " ".join(health["errors"]["recent"])
    for what in ("a BMP file", "a TIFF file", "a GIF file", "an EPS/PostScript file"):
        assert what in recent
    # the result goes out through the outbox's sender thread: on a loaded machine it can follow the upload
    assert wait_for(lambda: r.ipc.messages("/inference"))
    assert [m["source"] for m in r.ipc.messages("/inference")] == ["e.png"]


def test_an_upload_queued_in_another_format_is_never_uploaded(rig) -> None:
    """Entries an older component queued with a BMP body: dropped with the reason, the queue flows on."""
    r = rig()
    meta = {
        "bucket": "raw-bucket",
        "metadata": {},
        "topic": f"loupe/{THING}/low-confidence",
        "announce": {"thing": THING},
    }
    r.outbox.put(UPLOADS, {**meta, "key": "raw/feedback/old.bmp", "content_type": "image/bmp"}, grey_image(9, "BMP"))
    r.outbox.put(UPLOADS, {**meta, "key": "raw/feedback/new.png", "content_type": "image/png"}, grey_png(9))
    r.app.start()
    assert wait_for(lambda: r.uploader.objects and r.outbox.depth(UPLOADS) == 0)
    assert list(r.uploader.objects) == [("raw-bucket", "raw/feedback/new.png")]
    assert r.app.stats.counters["uploads_refused_format"] == 1
    assert any("a BMP file" in e for e in r.app.stats.errors)


def test_a_full_disk_keeps_frames_in_the_folder_and_the_senders_survive_outbox_failures(rig) -> None:
    r = rig()
    r.app.start()
    drop(r.frames, "a.png", 0.05)
    assert len(run_until(r.app, 1)) == 1
    assert wait_for(lambda: len(r.ipc.messages("/inference")) == 1 and r.outbox.depth(RESULTS) == 0)

    # a write failing inside its transaction while the sender acknowledges a delivered result
    deny_deletes(r.outbox, True)
    drop(r.frames, "b.png", 0.05)
    assert len(run_until(r.app, 1)) == 1
    assert wait_for(lambda: r.app.stats.counters.get("results_delivery_failures", 0) >= 1)
    deny_deletes(r.outbox, False)
    assert wait_for(lambda: r.outbox.depth(RESULTS) == 0)  # the same sender goes on (b is sent again: at least once)

    # the disk fills up: an uncertain frame's result and image cannot be stored
    fill_disk(r.outbox, top_up=True)
    drop(r.frames, "c.png", 0.45)
    assert step_until(r.app, lambda: r.app.stats.counters.get("outbox_write_failures", 0) >= 1)
    assert (r.frames / "c.png").exists()  # still in its folder: nothing lost
    assert r.outbox.depth(RESULTS) == 0 and r.outbox.depth(UPLOADS) == 0  # nothing half-stored
    free_disk(r.outbox)  # space returns: the frame is read again and goes through
    assert step_until(r.app, lambda: not (r.frames / "c.png").exists())
    assert wait_for(lambda: "c.png" in {m["source"] for m in r.ipc.messages("/inference")} and r.uploader.objects)
    assert {m["source"] for m in r.ipc.messages("/inference")} == {"a.png", "b.png", "c.png"}
    drop(r.frames, "d.png", 0.05)
    assert len(run_until(r.app, 1)) == 1
    assert wait_for(lambda: "d.png" in {m["source"] for m in r.ipc.messages("/inference")})
    health = r.app.health()
    assert health["outbox_store"]["write_failures"] >= 2
    assert any("database or disk is full" in e for e in health["errors"]["recent"])


def test_a_corrupt_outbox_is_moved_aside_and_reported_in_health_once(rig, tmp_path: Path) -> None:
    store = tmp_path / "work" / "com.loupe.inference" / "outbox.sqlite"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"\x00garbage, not SQLite" * 200)
    r = rig()
    (aside,) = store.parent.glob("outbox.sqlite.corrupt-*")
    assert aside.read_bytes().startswith(b"\x00garbage")
    r.ipc.fail_publish = True
    r.app.start()  # the model swap asks for a health message: not delivered, so the alert stays for the next
    assert wait_for(lambda: r.app.stats.counters.get("health_unsent", 0) >= 1)
    r.ipc.fail_publish = False
    drop(r.frames, "a.png", 0.05)
    assert len(run_until(r.app, 1)) == 1
    assert wait_for(lambda: len(r.ipc.messages("/inference")) == 1)  # the fresh store works
    assert r.app.publish_health()
    (health,) = r.ipc.messages("/health")
    (alert,) = health["alerts"]
    assert "file is not a database" in alert and aside.name in alert
    assert health["outbox_store"]["moved_aside"] == 1
    assert any("file is not a database" in e for e in health["errors"]["recent"])
    assert r.app.publish_health()
    assert r.ipc.messages("/health")[-1]["alerts"] == []  # delivered once, not repeated


def test_the_byte_budget_evicts_the_oldest_and_health_reports_it(rig) -> None:
    r = rig(max_bytes=6_000)
    r.app.start()
    r.ipc.fail_publish = True
    r.uploader.fail = True
    for i in range(8):
        drop(r.frames, f"f{i}.png", 0.45)  # uncertain: a result (~700 bytes) and an image (~400 bytes) each
    assert len(run_until(r.app, 8)) == 8
    assert r.outbox.size() <= 6_000
    health = r.app.health()
    dropped, store = health["dropped"], health["outbox_store"]
    assert dropped["outbox_evicted_results"] + dropped["outbox_evicted_uploads"] > 0
    assert store["max_bytes"] == 6_000 and 0 < store["bytes"] <= 6_000
    assert store["evicted_bytes"]["results"] + store["evicted_bytes"]["uploads"] > 0
    kept = r.outbox.depth(RESULTS)
    assert kept + dropped["outbox_evicted_results"] == 8
    r.ipc.fail_publish = False
    r.uploader.fail = False
    assert wait_for(lambda: len(r.ipc.messages("/inference")) == kept)
    assert [m["source"] for m in r.ipc.messages("/inference")] == [f"f{i}.png" for i in range(8 - kept, 8)]


def test_hot_swap_between_frames_drops_nothing(rig, tmp_path: Path) -> None:
    r = rig()
    r.app.start()
    for i in range(4):
        drop(r.frames, f"a{i}.png", 0.05)
    before = run_until(r.app, 4)
    # deployment of model 2: Greengrass asks, the component acknowledges, then notifies after the update
    write_pointer(r.pointer, write_model(tmp_path / "model-2", "2", table=default_table(64, base=0.5)), "2")
    r.ipc.component_handler(pre_update("d-1"))
    assert r.ipc.deferred == [("d-1", 0)]
    r.ipc.component_handler(post_update("d-1"))
    for i in range(4):
        drop(r.frames, f"b{i}.png", 0.05)
    after = run_until(r.app, 4)
    assert wait_for(lambda: r.app.manager.current.version == "2")
    for i in range(4):
        drop(r.frames, f"c{i}.png", 0.05)
    last = run_until(r.app, 4)
    outcomes = before + after + last
    assert len(outcomes) == 12  # every frame got a result
    versions = [o.message["model_version"] for o in outcomes]
    assert versions[:4] == ["1"] * 4 and versions[-4:] == ["2"] * 4
    assert versions == sorted(versions)  # one switch, between frames
    assert wait_for(lambda: len(r.ipc.messages("/inference")) == 12)
    assert "RUNNING" in r.ipc.states and "ERRORED" not in r.ipc.states


def test_failing_new_model_keeps_old_one_and_reports_errored(rig, tmp_path: Path) -> None:
    r = rig()
    r.app.start()
    write_pointer(r.pointer, write_model(tmp_path / "model-bad", "9", wrong_digest=True), "9")
    r.ipc.component_handler(post_update("d-2"))
    assert wait_for(lambda: "ERRORED" in r.ipc.states)
    assert r.app.manager.current.version == "1"
    drop(r.frames, "x.png", 0.05)
    (outcome,) = run_until(r.app, 1)
    assert outcome.message["model_version"] == "1"
    health = r.app.health()
    assert "model 9" in health["model_error"] and "digest mismatch" in health["model_error"]
    status = json.loads((Path(r.app.work_dir) / "status.json").read_text())
    assert status["state"] == "ERRORED" and status["model_version"] == "1"


def test_no_model_yet_leaves_frames_in_place(rig, tmp_path: Path) -> None:
    r = rig(pointer=False)
    r.app.start()
    drop(r.frames, "wait.png", 0.05)
    assert run_until(r.app, 1, timeout=1.0) == []
    assert (r.frames / "wait.png").exists()  # nothing consumed, nothing lost
    assert "is com.loupe.model deployed" in r.app.health()["model_error"]
    write_pointer(r.pointer, write_model(tmp_path / "late", "5"), "5")
    r.app.on_update("deployment d-3")
    assert len(run_until(r.app, 1)) == 1


def test_configuration_update_over_ipc_changes_thresholds(rig) -> None:
    r = rig()
    r.app.start()
    r.ipc.config = {"model": {"confThreshold": 0.95}, "feedback": {"enabled": False}}
    r.ipc.config_handlers[None](SimpleNamespace())
    drop(r.frames, "a.png", 0.45)
    (o,) = run_until(r.app, 1)
    assert o.message["boxes"] == [] and o.message["verdict"] == "pass" and not o.uncertain


def test_a_deployed_band_with_the_top_criterion_judges_the_best_guess_only(rig) -> None:
    """The test model always adds a 0.9 box: with the top criterion and a band under it, a frame whose second
    box is inside the band is not uncertain; with a band around 0.9 it is (and goes back)."""
    r = rig({"feedback": {"bandLow": 0.3, "bandHigh": 0.6, "criterion": "top"}})
    r.app.start()
    drop(r.frames, "a.png", 0.45)
    (o,) = run_until(r.app, 1)
    assert not o.uncertain and o.message["max_confidence"] == pytest.approx(0.9)
    feedback = {"bucket": "raw-bucket", "maxPerMinute": 100, "bandLow": 0.85, "bandHigh": 0.95, "criterion": "top"}
    r.ipc.config = {"feedback": feedback}  # the next deployment's band, over IPC
    r.ipc.config_handlers[None](SimpleNamespace())
    drop(r.frames, "b.png", 0.45)
    (o,) = run_until(r.app, 1)
    assert o.uncertain and o.sampled


def test_invalid_configuration_is_reported_and_defaults_used(rig) -> None:
    r = rig({"model": {"iouThreshold": 3}, "feedback": {"bandLow": "high"}})
    r.app.start()
    errors = r.app.health()["errors"]["recent"]
    assert any("model.iouThreshold" in e for e in errors) and any("feedback.bandLow" in e for e in errors)
    drop(r.frames, "a.png", 0.05)
    assert len(run_until(r.app, 1)) == 1  # still running on defaults


def test_shadow_mode_reports_agreement(rig, tmp_path: Path) -> None:
    cand = write_model(tmp_path / "candidate", "2-rc", table=default_table(64, base=0.5))
    r = rig({"shadow": {"enabled": True, "dir": str(cand), "everyNthFrame": 1}})
    r.app.start()
    assert wait_for(lambda: r.app.shadow.model is not None)
    for i in range(3):
        drop(r.frames, f"s{i}.png", 0.05)
    outcomes = run_until(r.app, 3)
    assert all(o.message["model_version"] == "1" for o in outcomes)  # production drives results
    shadow = r.app.health()["shadow"]
    assert shadow["model_version"] == "2-rc" and shadow["frames"] == 3 and shadow["state"] == "running"
    assert shadow["verdict_agreement"] == 1.0  # both see the 0.9 defect
    assert shadow["box_recall"] == 1.0 and shadow["box_precision"] == 0.5  # candidate adds a ~0.5 box


def test_the_next_frame_is_in_the_session_while_the_previous_one_is_recorded(rig, monkeypatch) -> None:
    """session.run of frame n+1 overlaps the bookkeeping of frame n (decode/NMS, outbox): the loop is pipelined."""
    r = rig()
    r.app.start()
    runs: list[tuple[int, ...]] = []
    real_infer = LoadedModel.infer
    monkeypatch.setattr(LoadedModel, "infer", lambda self, t: runs.append(t.shape) or real_infer(self, t))
    release = threading.Event()
    real_put = r.outbox.put

    def slow_put(queue, meta, payload):
        if queue == RESULTS:
            release.wait(20)  # frame n's result is held at the outbox until the test has seen frame n+1 run
        return real_put(queue, meta, payload)

    monkeypatch.setattr(r.outbox, "put", slow_put)
    drop(r.frames, "a.png", 0.05)
    drop(r.frames, "b.png", 0.9)
    outcomes: list = []
    loop = threading.Thread(target=lambda: outcomes.extend(run_until(r.app, 2)))
    loop.start()
    try:
        overlapped = wait_for(lambda: len(runs) == 2, timeout=8)
    finally:
        release.set()
        loop.join()
    assert overlapped, f"frame 2 was not run while frame 1 was being recorded ({len(runs)} session runs)"
    assert [o.message["source"] for o in outcomes] == ["a.png", "b.png"]  # still in order
    assert [len(o.message["boxes"]) for o in outcomes] == [1, 2]  # each frame got its own output (b: a 2nd box)


def test_shadow_and_production_share_one_preparation_per_frame(rig, tmp_path: Path, monkeypatch) -> None:
    cand = write_model(tmp_path / "candidate", "2-rc", table=default_table(64, base=0.5))
    r = rig({"shadow": {"enabled": True, "dir": str(cand), "everyNthFrame": 1}})
    letterboxes: list[tuple[int, int]] = []
    real = Preparer.letterbox
    monkeypatch.setattr(Preparer, "letterbox", lambda self, rgb, sz: letterboxes.append(sz) or real(self, rgb, sz))
    r.app.start()
    assert wait_for(lambda: r.app.shadow.model is not None)
    for i in range(3):
        drop(r.frames, f"s{i}.png", 0.05)
    assert len(run_until(r.app, 3)) == 3
    assert r.app.health()["shadow"]["frames"] == 3
    assert len(letterboxes) == 3  # prepared once, fed to both models


def test_the_shadow_runs_on_every_nth_frame_and_an_identical_candidate_agrees_fully(rig, tmp_path: Path) -> None:
    same = write_model(tmp_path / "same", "1-again")  # the production graph under another version
    r = rig({"shadow": {"enabled": True, "dir": str(same), "everyNthFrame": 3}})
    r.app.start()
    assert wait_for(lambda: r.app.shadow.model is not None)
    for i, score in enumerate((0.05, 0.45, 0.05, 0.45, 0.05, 0.45, 0.05)):
        drop(r.frames, f"n{i}.png", score)
    assert len(run_until(r.app, 7)) == 7
    shadow = r.app.health()["shadow"]
    assert shadow["production_frames"] == 7 and shadow["frames"] == 3  # frames 1, 4 and 7
    assert shadow["every_nth_frame"] == 3 and shadow["errors"] == 0
    assert shadow["verdict_agreement"] == 1.0 and shadow["box_recall"] == 1.0 and shadow["box_precision"] == 1.0
    # frames 1 and 7 are confident, frame 4 (0.45) is uncertain: the same for both on the same frames
    assert shadow["uncertain"] == {"production": 1, "shadow": 1}
    assert shadow["latency_ms"]["p50"] is not None and shadow["latency_ms"]["p95"] >= shadow["latency_ms"]["p50"]


def test_a_shadow_that_raises_is_counted_and_production_is_unaffected(rig, tmp_path: Path, monkeypatch) -> None:
    cand = write_model(tmp_path / "candidate", "2-rc", table=default_table(64, base=0.5))
    r = rig({"shadow": {"enabled": True, "dir": str(cand), "everyNthFrame": 1}})
    r.app.start()
    assert wait_for(lambda: r.app.shadow.model is not None)
    candidate = r.app.shadow.model

    def broken(tensor):
        raise RuntimeError("candidate session crashed")

    monkeypatch.setattr(candidate, "infer", broken)
    for i in range(4):
        drop(r.frames, f"x{i}.png", 0.45 if i % 2 else 0.05)
    outcomes = run_until(r.app, 4)
    assert [o.message["source"] for o in outcomes] == [f"x{i}.png" for i in range(4)]
    assert [o.uncertain for o in outcomes] == [False, True, False, True]  # production decided every frame
    assert wait_for(lambda: len(r.ipc.messages("/inference")) == 4 and len(r.uploader.objects) == 2)
    assert all(m["model_version"] == "1" for m in r.ipc.messages("/inference"))
    health = r.app.health()
    assert health["frames"] == 4
    shadow = health["shadow"]
    assert shadow["errors"] == 4 and shadow["frames"] == 0 and shadow["production_frames"] == 4
    assert shadow["state"] == "running" and "candidate session crashed" in shadow["error"]


def test_a_missing_candidate_never_stops_production_and_is_reported(rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from loupe_edge import shadow as shadow_mod

    monkeypatch.setattr(shadow_mod, "INSTALL_GRACE_S", 0.0)  # past the time com.loupe.shadow's Install may take
    r = rig({"shadow": {"enabled": True, "modelVersion": "9", "sha256": {"model.onnx": "c" * 64}}})
    r.app.start()  # no com.loupe.shadow pointer on this device
    drop(r.frames, "p.png", 0.05)
    assert len(run_until(r.app, 1)) == 1
    shadow = r.app.health()["shadow"]
    assert shadow["state"] == "failed" and shadow["model_version"] == "9" and shadow["frames"] == 0
    assert "com.loupe.shadow/current.json does not exist" in shadow["error"]


def test_a_configuration_update_starts_and_ends_the_shadow_without_a_restart(rig, tmp_path: Path) -> None:
    cand = write_model(tmp_path / "candidate", "2-rc", table=default_table(64, base=0.5))
    r = rig()
    r.app.start()
    assert r.app.health()["shadow"] is None
    raw = {"thingName": THING, "workDir": str(r.app.work_dir), "source": {"path": str(r.frames)}}
    r.app.reconfigure(validate({**raw, "shadow": {"enabled": True, "dir": str(cand), "everyNthFrame": 1}}))
    assert wait_for(lambda: r.app.shadow is not None and r.app.shadow.model is not None)
    drop(r.frames, "c.png", 0.05)
    assert len(run_until(r.app, 1)) == 1
    assert r.app.health()["shadow"]["frames"] == 1
    r.app.reconfigure(validate(raw))
    assert r.app.shadow is None and r.app.health()["shadow"] is None


def test_result_messages_stay_under_the_iot_core_limit() -> None:
    boxes = [{"class_id": 0, "class_name": "scratch" * 10, "confidence": 0.5, "xyxy": [1.0] * 4}] * 3000
    payload = encode({"thing": THING, "boxes": boxes})
    assert len(payload) <= MAX_MESSAGE_BYTES
    doc = json.loads(payload)
    assert doc["boxes_truncated"] == 3000 - len(doc["boxes"]) and len(doc["boxes"]) > 100


def test_ipc_transport_reports_refusals() -> None:
    ipc = FakeIpcClient()
    t = IpcTransport(ipc)
    assert t.publish_many([("a/b", b"1"), ("a/c", b"2")], timeout=1) == 2
    ipc.fail_publish = True
    with pytest.raises(TransportError):
        t.publish_many([("a/b", b"3")], timeout=1)
    assert np.array_equal([p for _, _, p in ipc.published], [b"1", b"2"])


class ArraySource:
    """A video-like source: decoded frames, no file bytes."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        from loupe_edge.sources import RawFrame

        self.frames = [RawFrame(f"v{i}", f"cam#{i}", rgb=a) for i, a in enumerate(frames)]
        self.done_ids: list[str] = []

    def next(self, timeout: float):
        if self.frames:
            return self.frames.pop(0)
        time.sleep(timeout)  # an empty camera blocks for its timeout, as the real sources do: the loop's pacing
        return None

    def done(self, frame) -> None:
        self.done_ids.append(frame.frame_id)

    def reject(self, frame, reason) -> None:
        raise AssertionError(reason)

    def close(self) -> None:
        return None


def test_video_frames_are_encoded_as_jpeg_for_feedback(tmp_path: Path) -> None:
    from loupe_edge.transport import LocalControl

    v = brightness_for(0.45, 64)
    source = ArraySource([np.full((64, 64, 3), v, np.uint8)])
    cfg = validate(
        {
            "thingName": THING,
            "workDir": str(tmp_path / "work"),
            "model": {"dir": str(write_model(tmp_path / "m", "4")), "pollSeconds": 3600},
            "feedback": {"bucket": "raw-bucket"},
            "health": {"intervalSeconds": 3600},
        }
    )
    ipc, uploader = FakeIpcClient(), FakeUploader()
    outbox = Outbox(tmp_path / "o.sqlite", {RESULTS: 100, UPLOADS: 10})
    app = EdgeApp(cfg, IpcTransport(ipc), LocalControl(), outbox, uploader=uploader, source=source)
    try:
        app.start()
        (o,) = run_until(app, 1)
        assert o.uncertain and o.sampled and source.done_ids == ["v0"]
        assert wait_for(lambda: uploader.objects)
        ((_, key), (body, ctype, _)) = next(iter(uploader.objects.items()))
        assert key == f"raw/feedback/{THING}/v0.jpg" and ctype == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
    finally:
        app.stop()
        outbox.close()
