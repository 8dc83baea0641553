"""The inference component as a process: real MQTT broker on loopback, S3 in moto, real model files on disk."""

from __future__ import annotations

import json
import os
import time

import pytest
from support.edge_helpers import default_table, write_model, write_pointer
from support.edge_mqtt import THING, LinkProxy, outbox_depth
from support.waiting import wait_until

pytestmark = pytest.mark.integration

OUTAGE_S = float(os.environ.get("LOUPE_EDGE_OUTAGE_S", "3"))


def test_results_arrive_over_mqtt(component, subscriber) -> None:
    c = component({"feedback": {"enabled": False}})
    write_pointer(c.pointer, write_model(c.root / "model-1", "1"), "1")
    c.start()
    names = [c.drop(0.05) for _ in range(5)]
    assert subscriber.wait(lambda s: len(s.of("inference")) >= 5), c.logs()
    results = subscriber.of("inference")
    assert [r["source"] for r in results] == names
    assert all(r["thing"] == THING and r["model_version"] == "1" and r["verdict"] == "defect" for r in results)
    assert len({r["frame_id"] for r in results}) == 5
    assert subscriber.wait(lambda s: any(h["frames_total"] >= 5 for h in s.of("health")))
    assert not any(p.suffix == ".png" for p in c.frames.iterdir())


def test_broker_outage_loses_no_result(component, subscriber, broker) -> None:
    link = LinkProxy((broker.host, broker.port))  # the component reaches the broker through a cuttable link
    try:
        c = component({"feedback": {"enabled": False}}, mqtt_port=link.port)
        write_pointer(c.pointer, write_model(c.root / "model-1", "1"), "1")
        c.start()
        first = [c.drop(0.05) for _ in range(3)]
        assert subscriber.wait(lambda s: len(s.of("inference")) >= 3), c.logs()
        link.cut()  # IoT Core unreachable
        during = [c.drop(0.05) for _ in range(10)]
        # the component keeps inferring; the results wait in its disk outbox, not lost, not sent
        assert wait_until(lambda: outbox_depth(c.work) >= len(during), 30, 0.1), c.logs()
        time.sleep(OUTAGE_S)  # the outage's length (LOUPE_EDGE_OUTAGE_S=60 reproduces the one minute)
        assert outbox_depth(c.work) >= len(during)  # still held after the outage, nothing dropped
        link.restore()
        after = [c.drop(0.05) for _ in range(2)]
        expected = first + during + after
        assert subscriber.wait(lambda s: len({r["source"] for r in s.of("inference")}) >= len(expected), 60), c.logs()
        got = [r["source"] for r in subscriber.of("inference")]
        assert set(got) == set(expected)
        deduped = list(dict.fromkeys(got))  # QoS 1 is at-least-once: a resend may repeat, never reorder
        assert deduped == expected
        assert c.proc.poll() is None
        assert "lost connection to MQTT broker" in c.logs()
    finally:
        link.close()


def test_broker_restart_loses_no_result(component, subscriber, broker) -> None:
    if not broker.persistent:
        pytest.skip("needs a broker that keeps the subscriber's session across a restart (mosquitto)")
    c = component({"feedback": {"enabled": False}})
    write_pointer(c.pointer, write_model(c.root / "model-1", "1"), "1")
    c.start()
    c.drop(0.05)
    assert subscriber.wait(lambda s: len(s.of("inference")) >= 1), c.logs()
    broker.stop()
    during = [c.drop(0.05) for _ in range(5)]
    # the results of the outage are in the disk outbox (inferred, not sent) before the broker comes back
    assert wait_until(lambda: outbox_depth(c.work) >= len(during), 30, 0.1), c.logs()
    broker.start()  # same port, persisted sessions
    assert subscriber.wait(lambda s: {r["source"] for r in s.of("inference")} >= set(during), 60), c.logs()


def test_model_swap_under_a_stream_drops_no_frame(component, subscriber) -> None:
    c = component({"feedback": {"enabled": False}})
    write_pointer(c.pointer, write_model(c.root / "model-1", "1"), "1")
    c.start()
    sent = [c.drop(0.05)]
    assert subscriber.wait(lambda s: len(s.of("inference")) >= 1), c.logs()  # serving model 1
    for i in range(30):
        sent.append(c.drop(0.05))
        if i == 12:  # the model component's Install step rewrites the pointer mid-stream
            write_pointer(c.pointer, write_model(c.root / "model-2", "2", table=default_table(64, base=0.3)), "2")
        time.sleep(0.05)  # a camera's pace (20 fps): the swap must happen inside a running stream, not between
    assert subscriber.wait(lambda s: len({r["source"] for r in s.of("inference")}) >= 31, 60), c.logs()
    results = {r["source"]: r for r in subscriber.of("inference")}
    assert set(results) == set(sent)  # zero dropped frames
    versions = [results[name]["model_version"] for name in sent]
    assert versions[0] == "1" and versions[-1] == "2"
    assert versions == sorted(versions)  # a single switch between two frames
    assert subscriber.wait(lambda s: any(h["model_version"] == "2" for h in s.of("health")))


def test_corrupt_new_model_leaves_the_old_one_serving(component, subscriber) -> None:
    c = component({"feedback": {"enabled": False}})
    write_pointer(c.pointer, write_model(c.root / "model-1", "1"), "1")
    c.start()
    c.drop(0.05)
    assert subscriber.wait(lambda s: len(s.of("inference")) >= 1), c.logs()
    write_pointer(c.pointer, write_model(c.root / "model-2", "2", corrupt=True), "2")
    assert subscriber.wait(lambda s: any(h.get("model_error") for h in s.of("health"))), c.logs()
    error = next(h["model_error"] for h in subscriber.of("health") if h.get("model_error"))
    assert error.startswith("model 2:")
    names = [c.drop(0.05) for _ in range(3)]
    assert subscriber.wait(lambda s: {r["source"] for r in s.of("inference")} >= set(names)), c.logs()
    assert {r["model_version"] for r in subscriber.of("inference")} == {"1"}
    status = json.loads((c.work / "status.json").read_text())
    assert status["state"] == "ERRORED" and status["model_version"] == "1"
    assert c.proc.poll() is None


def test_uncertain_frames_reach_s3_with_metadata(component, subscriber, s3) -> None:
    bucket = "loupe-raw-edge-it"
    s3.create_bucket(Bucket=bucket)
    c = component({"feedback": {"bucket": bucket, "bandLow": 0.25, "bandHigh": 0.6}})
    write_pointer(c.pointer, write_model(c.root / "model-7", "7"), "7")
    c.start()
    c.drop(0.05)  # confident: not sampled
    uncertain = c.drop(0.4)
    c.drop(0.75)  # confident again
    sentinel = c.drop(0.4)  # uncertain: announced after anything the confident frames before it would have caused
    assert subscriber.wait(lambda s: any(r["source"] == sentinel for r in s.of("inference"))), c.logs()
    results = {r["source"]: r for r in subscriber.of("inference")}
    sentinel_id = results[sentinel]["frame_id"]
    assert subscriber.wait(lambda s: any(a["frame_id"] == sentinel_id for a in s.of("low-confidence"))), c.logs()
    (announce,) = [a for a in subscriber.of("low-confidence") if a["frame_id"] != sentinel_id]
    result = next(r for r in subscriber.of("inference") if r["source"] == uncertain)
    assert announce["frame_id"] == result["frame_id"] and result["uncertain"] is True
    assert announce["bucket"] == bucket and announce["key"] == f"raw/feedback/{THING}/{result['frame_id']}.png"
    assert announce["model_version"] == "7" and announce["reason"] == "confidence-band"
    head = s3.head_object(Bucket=bucket, Key=announce["key"])
    metadata = dict(head["Metadata"])
    # the boxes the device found, for the console's Fleet page: [class, confidence, left, top, width, height],
    # most confident first
    boxes = json.loads(metadata.pop("boxes"))
    assert boxes and all(len(b) == 6 for b in boxes), boxes
    assert [b[1] for b in boxes] == sorted((b[1] for b in boxes), reverse=True), boxes
    assert metadata == {
        "device": THING,
        "model-version": "7",
        "max-confidence": f"{announce['max_confidence']:.4f}",
        "reason": "confidence-band",
    }
    assert head["ContentType"] == "image/png"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"raw/feedback/{THING}/")["Contents"]]
    sentinel_key = f"raw/feedback/{THING}/{sentinel_id}.png"
    assert sorted(keys) == sorted([announce["key"], sentinel_key])  # confident frames stay on the device


def test_s3_outage_delays_feedback_but_loses_nothing(component, subscriber, s3, s3_endpoint) -> None:
    bucket = "loupe-raw-edge-it-outage"
    s3.create_bucket(Bucket=bucket)
    host, port = s3_endpoint.removeprefix("http://").split(":")
    link = LinkProxy((host, int(port)))  # S3 reached through a cuttable link
    try:
        c = component({"feedback": {"bucket": bucket}}, s3_url=f"http://127.0.0.1:{link.port}")
        write_pointer(c.pointer, write_model(c.root / "model-1", "1"), "1")
        c.start()
        c.drop(0.05)
        assert subscriber.wait(lambda s: len(s.of("inference")) >= 1), c.logs()
        link.cut()  # S3 unreachable
        uncertain = [c.drop(0.4) for _ in range(3)]
        assert subscriber.wait(lambda s: {r["source"] for r in s.of("inference")} >= set(uncertain)), c.logs()
        # the sentinel: a health report counting all three uploads as pending, i.e. each one has been tried
        assert subscriber.wait(lambda s: any(h["outbox"]["uploads"] == 3 for h in s.of("health"))), c.logs()
        assert subscriber.of("low-confidence") == []  # announced only once the image is in S3
        link.restore()
        assert subscriber.wait(lambda s: len(s.of("low-confidence")) >= 3, 60), c.logs()
        keys = {m["key"] for m in subscriber.of("low-confidence")}
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"raw/feedback/{THING}/")["Contents"]
        assert {o["Key"] for o in listed} == keys and len(keys) == 3
        results = {r["frame_id"]: r for r in subscriber.of("inference")}
        assert {m["frame_id"] for m in subscriber.of("low-confidence")} <= set(results)
    finally:
        link.close()
