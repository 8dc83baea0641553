from __future__ import annotations

import json

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
    "source_thing": "loupe-device-1",  # the rule's topic(2)
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
        # published on its own topic, claiming to be another device with that device's key
        ({"thing": "loupe-device-9", "key": "raw/feedback/loupe-device-9/f.jpg"}, "claiming to be loupe-device-9"),
        ({"source_thing": "loupe-device-9", "topic": "loupe/loupe-device-9/low-confidence"}, "claiming to be"),
        # without the rule's topic fields (a rule that does not select them) the sender is unknown: refused
        ({"source_thing": None}, "source_thing"),
        ({"topic": None}, "topic"),
    ],
)
def test_bad_announcements_are_refused_with_the_reason(change: dict, why: str) -> None:
    message = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(FeedbackRejected, match=why):
        parse_message(message, "raw-bucket")


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
    health = parse_health({**message, "topic": "loupe/loupe-device-2/health", "source_thing": "loupe-device-2"})
    values = metric_values(health)
    assert values["UncertainFrameShare"] == (0.32, "None")
    assert values["LatencyP95"][0] == 61.5
    assert values["OutboxDepth"][0] == 4.0 and values["DroppedMessages"][0] == 3.0
    assert health.errors == 4


FROM_D = {"topic": "loupe/d/health", "source_thing": "d"}


def test_a_device_with_no_frames_reports_no_drift_value() -> None:
    values = metric_values(parse_health({"thing": "d", "fps": 0.0, "uncertain_share": None, **FROM_D}))
    assert "UncertainFrameShare" not in values and values["FramesPerSecond"][0] == 0.0
    with pytest.raises(HealthRejected, match="uncertain_share"):
        parse_health({"thing": "d", "uncertain_share": 3, **FROM_D})


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ({"thing": "other", **FROM_D}, "d published health claiming to be other"),
        ({"thing": "d", "topic": "loupe/e/health", "source_thing": "d"}, "arrived on loupe/e/health"),
        ({"thing": "d", "fps": 1.0}, "topic"),  # no rule fields: the sender is unknown
    ],
)
def test_health_must_come_from_the_thing_it_names(message: dict, why: str) -> None:
    with pytest.raises(HealthRejected, match=why):
        parse_health(message)


def test_fleet_membership_is_the_thing_groups_of_the_thing() -> None:
    import boto3
    from moto import mock_aws

    from loupe.edge_metrics import in_fleet

    with mock_aws():
        iot = boto3.client("iot", region_name="us-east-1")
        iot.create_thing_group(thingGroupName="fleet")
        iot.create_thing_group(thingGroupName="lab")
        for thing, group in (("in-fleet", "fleet"), ("in-lab", "lab")):
            iot.create_thing(thingName=thing)
            iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
        assert in_fleet(iot, "in-fleet", "fleet")
        assert not in_fleet(iot, "in-lab", "fleet")
        assert not in_fleet(iot, "never-registered", "fleet")


def test_a_rejected_announcement_is_kept_with_its_reason_and_not_raised() -> None:
    import json

    import boto3
    from moto import mock_aws

    from loupe.feedback import handle

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="raw-bucket")
        forged = {**GOOD, "thing": "loupe-device-9", "key": "raw/feedback/loupe-device-9/f.jpg"}
        result = handle(s3, ledger=None, event=forged, raw_bucket="raw-bucket")
        assert "claiming to be loupe-device-9" in result["rejected"]
        # filed under the thing of the topic, never the payload's claim
        assert result["record"].startswith("quarantine/device-messages/feedback/loupe-device-1/")
        record = json.loads(s3.get_object(Bucket="raw-bucket", Key=result["record"])["Body"].read())
        assert record["reason"] == result["rejected"] and record["message"] == forged
        missing = handle(s3, ledger=None, event=dict(GOOD), raw_bucket="raw-bucket")  # never uploaded
        assert "does not exist" in missing["rejected"]


def test_the_sample_events_are_what_the_rules_hand_the_handlers() -> None:
    import json
    from pathlib import Path

    events = Path(__file__).resolve().parents[3] / "events"
    feedback = json.loads((events / "feedback.json").read_text())
    assert parse_message(feedback, feedback["bucket"]).source_thing == "loupe-line1-cam1"
    health = parse_health(json.loads((events / "edge_health.json").read_text()))
    assert health.source_thing == health.thing == "loupe-line1-cam1"


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize(
    "template",
    [
        '{"fps": %s}',
        '{"latency_ms": {"p50": 1.0, "p95": %s}}',
        '{"latency_ms_p95": %s}',
        '{"dropped": {"outbox_results": %s}}',
        '{"outbox": {"results": %s}}',
        '{"errors": {"count": %s}}',
        '{"mean_top_confidence": %s}',
    ],
)
def test_health_with_a_non_finite_number_is_rejected_with_its_place(template: str, literal: str) -> None:
    # what the rule hands the function is JSON: Python's json reads NaN/Infinity literals (1e999 is Infinity)
    message = {"thing": "d", **json.loads(template % literal), **FROM_D}
    with pytest.raises(HealthRejected, match="not a finite number"):
        parse_health(message)


def test_health_with_an_unreadable_count_is_rejected_not_raised() -> None:
    with pytest.raises(HealthRejected, match="invalid health message"):
        parse_health({"thing": "d", "errors": {"count": "many"}, **FROM_D})


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("field", ["max_confidence", "timestamp"])
def test_an_announcement_with_a_non_finite_number_is_refused(field: str, literal: str) -> None:
    message = {**GOOD, field: json.loads(literal)}
    with pytest.raises(FeedbackRejected, match=f"{field}: not a finite number"):
        parse_message(message, "raw-bucket")
