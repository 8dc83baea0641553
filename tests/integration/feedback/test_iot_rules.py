"""IoT topic rules of template.yaml on a real MQTT broker on loopback, with the real router and handlers.

Each device connects with its thing name as client ID, as a Greengrass core device does in IoT Core (the device
policy's ${iot:Connection.Thing.ThingName} is that client ID)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import paho.mqtt.client as mqtt
import pytest
from PIL import Image
from support.waiting import wait_until

from loupe_local.local_auth import mqtt_login

pytestmark = pytest.mark.integration


@contextmanager
def connected(local_aws, client_id: str) -> Iterator[mqtt.Client]:
    assert local_aws.mqtt, "the local AWS should run an MQTT broker"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    mqtt_login(client, local_aws.credentials)
    ready = threading.Event()
    client.on_connect = lambda *a: ready.set()
    client.connect(local_aws.mqtt["host"], local_aws.mqtt["port"])
    client.loop_start()
    assert ready.wait(10), f"{client_id} could not connect"
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()


def publish(local_aws, thing: str, kind: str, message: dict) -> None:
    with connected(local_aws, thing) as device:
        device.publish(f"loupe/{thing}/{kind}", json.dumps(message), qos=1).wait_for_publish(5)


def _jpeg(seed: int) -> bytes:
    image = Image.new("RGB", (160, 120), (seed % 255, 90, 40))
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()


def _upload(local_aws, thing: str) -> tuple[str, str, bytes]:
    data = _jpeg(int(uuid.uuid4().int % 250))
    key = f"raw/feedback/{thing}/{uuid.uuid4().hex}.jpg"
    bucket = local_aws.physical("RawBucket")
    local_aws.client("s3").put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        Metadata={"device": thing, "model-version": "1.0.0", "max-confidence": "0.41", "reason": "band"},
    )
    return bucket, key, data


def _announcement(thing: str, bucket: str, key: str) -> dict:
    return {
        "thing": thing,
        "bucket": bucket,
        "key": key,
        "frame_id": key.rsplit("/", 1)[-1],
        "model_version": "1.0.0",
        "max_confidence": 0.41,
        "reason": "detection in the uncertainty band",
    }


def _ledger(local_aws):

    from loupe.ledger import Ledger

    table = local_aws.resource("dynamodb").Table(local_aws.physical("LedgerTable"))
    return Ledger(table)


def _rejections(local_aws, kind: str, thing: str, marker: str) -> list[dict]:
    s3 = local_aws.client("s3")
    bucket = local_aws.physical("RawBucket")
    prefix = f"quarantine/device-messages/{kind}/{thing}/"
    found = []
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        if marker in body:
            found.append(json.loads(body))
    return found


def _finished(local_aws, function_logical_id: str, since: int) -> list[dict]:
    name = local_aws.physical(function_logical_id)
    return [r for r in local_aws.router.async_results[since:] if r["function"] == name]


def test_an_announced_uncertain_frame_is_recorded_as_edge_feedback(local_aws) -> None:
    thing = "loupe-device-itest-1"
    bucket, key, data = _upload(local_aws, thing)
    publish(local_aws, thing, "low-confidence", _announcement(thing, bucket, key))
    entry = wait_until(lambda: _ledger(local_aws).get(hashlib.sha256(data).hexdigest()))
    assert entry, "the feedback frame never reached the ledger"
    assert entry["origin"]["kind"] == "edge_feedback" and entry["origin"]["device"] == thing
    assert entry["status"] in ("unlabeled", "claimed", "labeled")


def test_a_device_publishing_on_another_devices_topic_is_disconnected_and_not_delivered(local_aws) -> None:
    seen: list[bytes] = []
    with connected(local_aws, f"itest-watcher-{uuid.uuid4().hex[:6]}") as watcher:
        watcher.on_message = lambda c, u, msg: seen.append(msg.payload)
        watcher.subscribe("loupe/+/low-confidence", qos=1)
        forged, honest = uuid.uuid4().hex, uuid.uuid4().hex
        dropped = threading.Event()
        with connected(local_aws, "loupe-device-itest-4") as impostor:
            impostor.on_disconnect = lambda *a: dropped.set()
            impostor.reconnect_delay_set(60, 60)  # no automatic redelivery of the refused message meanwhile
            sent = impostor.publish("loupe/loupe-device-itest-5/low-confidence", json.dumps({"marker": forged}), qos=1)
            # IoT Core closes the connection of a client that publishes where its policy denies. mosquitto's ACL
            # can only drop the message (no disconnect on a denied publish in MQTT 3.1.1): checked with amqtt.
            if local_aws.mqtt.get("kind") == "amqtt":
                assert dropped.wait(10), "the broker kept the impostor connected"
            else:
                sent.wait_for_publish(5)  # mosquitto acknowledges, then drops, a denied publish
        publish(local_aws, "loupe-device-itest-5", "low-confidence", {"marker": honest})
        assert wait_until(lambda: any(honest.encode() in p for p in seen), timeout=15)
    assert not any(forged.encode() in p for p in seen), "a message published as another device was delivered"


def test_an_announcement_claiming_another_thing_is_rejected_and_kept_not_recorded(local_aws) -> None:
    victim = "loupe-device-itest-7"
    bucket, key, _ = _upload(local_aws, victim)
    # loupe-device-itest-6 publishes on its own topic but claims to be the victim, topic fields included
    forged = {
        **_announcement(victim, bucket, key),
        "topic": f"loupe/{victim}/low-confidence",
        "source_thing": victim,
    }
    since = len(local_aws.router.async_results)
    publish(local_aws, "loupe-device-itest-6", "low-confidence", forged)
    kept = wait_until(lambda: _rejections(local_aws, "feedback", "loupe-device-itest-6", key), timeout=30)
    assert kept, "the forged announcement left no rejection record"
    assert "claiming to be loupe-device-itest-7" in kept[0]["reason"]
    done = wait_until(lambda: _finished(local_aws, "FeedbackFunction", since), timeout=30)
    assert done[0]["outcome"] == "Success" and done[0]["attempts"] == 1  # a rejection is not retried
    metrics = local_aws.client("cloudwatch").list_metrics(Namespace="Loupe", MetricName="RejectedDeviceMessages")
    assert any({"Name": "kind", "Value": "feedback"} in m["Dimensions"] for m in metrics["Metrics"])


def test_an_announcement_of_a_missing_frame_is_rejected_once_not_sent_to_the_error_queue(local_aws) -> None:
    thing = "loupe-device-itest-2"
    marker = uuid.uuid4().hex
    bad = _announcement(thing, local_aws.physical("RawBucket"), f"raw/feedback/{thing}/{marker}.jpg")  # not uploaded
    since = len(local_aws.router.async_results)
    publish(local_aws, thing, "low-confidence", bad)
    kept = wait_until(lambda: _rejections(local_aws, "feedback", thing, marker), timeout=30)
    assert kept and "does not exist" in kept[0]["reason"]
    done = wait_until(lambda: _finished(local_aws, "FeedbackFunction", since), timeout=30)
    assert done[0]["attempts"] == 1
    sqs = local_aws.client("sqs")
    queued = sqs.receive_message(QueueUrl=local_aws.physical("IotErrorQueue"), MaxNumberOfMessages=10)
    assert not any(marker in m["Body"] for m in queued.get("Messages", []))


def _join_fleet(local_aws, thing: str) -> None:
    iot = local_aws.client("iot")
    group = local_aws.physical("FleetThingGroup")
    with suppress(iot.exceptions.ResourceAlreadyExistsException):
        iot.create_thing(thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)


def test_health_of_a_thing_outside_the_fleet_is_rejected_and_records_no_metric(local_aws) -> None:
    thing = f"loupe-device-stranger-{uuid.uuid4().hex[:6]}"  # the device policy admits it; the group does not
    marker = uuid.uuid4().hex
    publish(local_aws, thing, "health", {"thing": thing, "fps": 5.0, "uncertain_share": 0.9, "run": marker})
    kept = wait_until(lambda: _rejections(local_aws, "health", thing, marker), timeout=30)
    assert kept and "not in thing group" in kept[0]["reason"]
    metrics = local_aws.client("cloudwatch").list_metrics(Namespace="Loupe", MetricName="FramesPerSecond")
    assert not any({"Name": "device", "Value": thing} in m["Dimensions"] for m in metrics["Metrics"])


def test_health_becomes_metrics_and_the_drift_alarm_starts_labeling(local_aws) -> None:
    thing = "loupe-device-itest-3"
    _join_fleet(local_aws, thing)
    trigger = local_aws.invoker.find(local_aws.physical("LabelingTriggerFunction"))
    health_fn = local_aws.invoker.find(local_aws.physical("EdgeHealthFunction"))
    before_health = health_fn.invocations
    cloudwatch = local_aws.client("cloudwatch")
    with connected(local_aws, thing) as device:

        def drifting_health_fires_the_alarm() -> bool:
            health = {"thing": thing, "fps": 5.0, "uncertain_share": 0.8, "mean_top_confidence": 0.4}
            device.publish(f"loupe/{thing}/health", json.dumps(health), qos=1)
            time.sleep(2)  # a health report's pace, not a wait: the alarm needs a stream of them
            state = cloudwatch.describe_alarms(AlarmNames=[local_aws.physical("DriftAlarm")])["MetricAlarms"][0]
            return state["StateValue"] == "ALARM"

        fired = wait_until(drifting_health_fires_the_alarm, timeout=90, interval=0)
    assert health_fn.invocations > before_health
    metrics = cloudwatch.list_metrics(Namespace="Loupe", MetricName="UncertainFrameShare")["Metrics"]
    assert any({"Name": "device", "Value": thing} in m["Dimensions"] for m in metrics)
    assert fired, "the drift alarm never fired"
    assert wait_until(
        lambda: any(d.get("detail-type") == "CloudWatch Alarm State Change" for d in local_aws.router.delivered),
        timeout=20,
    )
    assert trigger.invocations > 0
