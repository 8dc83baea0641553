"""The demo's fleet watcher logs in to the local broker with the run's credential it is given, not with whatever
credential the process environment holds at that moment: with IAM on, a handler running in the same process holds
its role's session in os.environ while it runs (as Lambda gives it), and a watcher that read the environment then
was refused by the broker and saw no device message for the rest of the demo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from support.waiting import wait_for

from loupe_local.demo.context import FleetWatcher, Progress
from loupe_local.host.mqtt_broker import Broker
from loupe_local.local_auth import RunCredentials, mqtt_login

pytestmark = pytest.mark.integration


@pytest.fixture
def run_credentials() -> RunCredentials:
    return RunCredentials.generate()


@pytest.fixture
def broker(tmp_path: Path, run_credentials: RunCredentials) -> Iterator[Broker]:
    b = Broker(implementation="amqtt", state_dir=tmp_path, credentials=run_credentials)
    b.start()
    try:
        yield b
    finally:
        b.close()


def test_the_watcher_sees_device_messages_while_a_role_session_is_in_the_environment(
    broker: Broker, run_credentials: RunCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = RunCredentials.generate()  # what a running handler's role session looks like to os.environ
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", role.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", role.secret_access_key)
    watcher = FleetWatcher(broker.host, broker.port, Progress(), credentials=run_credentials)
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="loupe-device-watched")
    mqtt_login(device, run_credentials)
    device.connect(broker.host, broker.port)
    device.loop_start()
    try:
        payload = json.dumps({"model_version": "3", "uncertain": False}).encode()

        def seen() -> bool:
            device.publish("loupe/loupe-device-watched/inference", payload, qos=1)
            return watcher.frames.get("loupe-device-watched", 0) > 0

        wait_for(seen, timeout=20, what="the watcher to receive the device's result")
        assert watcher.model_versions["loupe-device-watched"] == "3"
    finally:
        device.loop_stop()
        device.disconnect()
        watcher.stop()
