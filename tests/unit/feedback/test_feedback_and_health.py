from __future__ import annotations

import pytest

from loupe.edge_metrics import HealthRejected, metric_values, parse_health
from loupe.feedback import FeedbackRejected, parse_message

GOOD = {
    "thing": "loupe-device-1",
    "bucket": "raw-bucket",
    "key": "raw/feedback/loupe-device-1/f-0001.jpg",
    "frame_id": "f-0001",
    "model_version": "1.0.3",
    "max_confidence": 0.41,
    "reason": "detection in the uncertainty band",
    "timestamp": "2026-11-21T10:00:00Z",
    "topic": "loupe/loupe-device-1/low-confidence",
}


def test_a_well_formed_announcement_is_accepted() -> None:
    message = parse_message(dict(GOOD), "raw-bucket")
    assert message.thing == "loupe-device-1" and message.max_confidence == pytest.approx(0.41)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"key": "raw/feedback/other-device/f.jpg"}, "not under raw/feedback/loupe-device-1/"),
        ({"key": "raw/feedback/loupe-device-1/../../x.jpg"}, "not under"),
        ({"bucket": "someone-elses"}, "not Loupe's raw bucket"),
        ({"max_confidence": 1.7}, "max_confidence"),
        ({"thing": "bad thing!"}, "thing"),
        ({"topic": "loupe/other/low-confidence"}, "arrived on"),
        ({"frame_id": ""}, "frame_id"),
    ],
)
def test_bad_announcements_are_refused_with_the_reason(change: dict, why: str) -> None:
    with pytest.raises(FeedbackRejected, match=why):
        parse_message({**GOOD, **change}, "raw-bucket")


def test_oversized_or_non_object_messages_are_refused() -> None:
    with pytest.raises(FeedbackRejected, match="bytes"):
        parse_message({**GOOD, "reason": "x" * 20000}, "raw-bucket")
    with pytest.raises(FeedbackRejected, match="JSON object"):
        parse_message(["not", "an", "object"], "raw-bucket")


def test_the_devices_health_message_becomes_metrics() -> None:
    message = {
        "thing": "loupe-device-2",
        "fps": 7.5,
        "frames": 75,
        "latency_ms": {"p50": 40.0, "p95": 61.5, "read": 1.0},
        "uncertain_share": 0.32,
        "mean_top_confidence": 0.55,
        "outbox": {"results": 3, "uploads": 1},
        "dropped": {"outbox_results": 2, "rejected_frames": 1},
        "errors": {"count": 4, "recent": ["x"]},
    }
    health = parse_health(message)
    values = metric_values(health)
    assert values["UncertainFrameShare"] == (0.32, "None")
    assert values["LatencyP95"][0] == 61.5
    assert values["OutboxDepth"][0] == 4.0 and values["DroppedMessages"][0] == 3.0
    assert health.errors == 4


def test_a_device_with_no_frames_reports_no_drift_value() -> None:
    values = metric_values(parse_health({"thing": "d", "fps": 0.0, "uncertain_share": None}))
    assert "UncertainFrameShare" not in values and values["FramesPerSecond"][0] == 0.0
    with pytest.raises(HealthRejected):
        parse_health({"thing": "d", "uncertain_share": 3})
