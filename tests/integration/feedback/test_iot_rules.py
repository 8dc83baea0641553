"""IoT topic rules of template.yaml on a real MQTT broker on loopback: feedback frames reach the ledger, bad
announcements reach the rule's error queue, health messages become metrics and the drift alarm starts labeling."""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from PIL import Image
from waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def publisher(local_aws):
    assert local_aws.mqtt, "the local AWS should run an MQTT broker"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:6]}")
    client.connect(local_aws.mqtt["host"], local_aws.mqtt["port"])
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def _jpeg(seed: int) -> bytes:
    image = Image.new("RGB", (160, 120), (seed % 255, 90, 40))
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()


def test_an_announced_uncertain_frame_is_recorded_as_edge_feedback(local_aws, publisher) -> None:
    from loupe.ledger import Ledger

    thing = "itest-device-1"
    data = _jpeg(int(uuid.uuid4().int % 250))
    key = f"raw/feedback/{thing}/{uuid.uuid4().hex}.jpg"
    bucket = local_aws.physical("RawBucket")
    local_aws.client("s3").put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        Metadata={"device": thing, "model-version": "1.0.0", "max-confidence": "0.41", "reason": "band"},
    )
    message = {
        "thing": thing,
        "bucket": bucket,
        "key": key,
        "frame_id": key.rsplit("/", 1)[-1],
        "model_version": "1.0.0",
        "max_confidence": 0.41,
        "reason": "detection in the uncertainty band",
    }
    publisher.publish(f"loupe/{thing}/low-confidence", json.dumps(message), qos=1).wait_for_publish(5)
    ledger = Ledger(_table(local_aws))
    entry = wait_until(lambda: ledger.get(hashlib.sha256(data).hexdigest()))
    assert entry, "the feedback frame never reached the ledger"
    assert entry["origin"]["kind"] == "edge_feedback" and entry["origin"]["device"] == thing
    assert entry["status"] in ("unlabeled", "claimed", "labeled")


def _table(local_aws):
    import boto3

    return boto3.resource("dynamodb", endpoint_url=local_aws.endpoint).Table(local_aws.physical("LedgerTable"))


def test_a_bad_announcement_goes_to_the_rules_error_queue(local_aws, publisher) -> None:
    sqs = local_aws.client("sqs")
    queue = local_aws.physical("IotErrorQueue")
    marker = uuid.uuid4().hex
    bad = {
        "thing": "itest-device-2",
        "bucket": local_aws.physical("RawBucket"),
        "key": f"raw/feedback/itest-device-2/{marker}.jpg",  # never uploaded
        "frame_id": marker,
        "max_confidence": 0.5,
    }
    publisher.publish("loupe/itest-device-2/low-confidence", json.dumps(bad), qos=1).wait_for_publish(5)

    def found():
        for msg in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            body = json.loads(msg["Body"])
            if body["payload"].get("frame_id") == marker:
                return body
        return None

    body = wait_until(found, timeout=30)
    assert body and "does not exist" in body["error"]


def test_health_becomes_metrics_and_the_drift_alarm_starts_labeling(local_aws, publisher) -> None:
    trigger = local_aws.invoker.find(local_aws.physical("LabelingTriggerFunction"))
    health_fn = local_aws.invoker.find(local_aws.physical("EdgeHealthFunction"))
    before_health = health_fn.invocations
    cloudwatch = local_aws.client("cloudwatch")
    deadline = time.monotonic() + 90
    fired = False
    while time.monotonic() < deadline and not fired:
        health = {"thing": "itest-device-3", "fps": 5.0, "uncertain_share": 0.8, "mean_top_confidence": 0.4}
        publisher.publish("loupe/itest-device-3/health", json.dumps(health), qos=1)
        time.sleep(2)
        state = cloudwatch.describe_alarms(AlarmNames=[local_aws.physical("DriftAlarm")])["MetricAlarms"][0]
        fired = state["StateValue"] == "ALARM"
    assert health_fn.invocations > before_health
    metrics = cloudwatch.list_metrics(Namespace="Loupe", MetricName="UncertainFrameShare")["Metrics"]
    assert any({"Name": "device", "Value": "itest-device-3"} in m["Dimensions"] for m in metrics)
    assert fired, "the drift alarm never fired"
    assert wait_until(
        lambda: any(d.get("detail-type") == "CloudWatch Alarm State Change" for d in local_aws.router.delivered),
        timeout=20,
    )
    assert trigger.invocations > 0
