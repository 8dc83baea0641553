"""The local MQTT broker, both implementations: no anonymous client, and a will obeys the device policy.

Replays the review's attacks on a real broker on loopback: a client with no login (or a guessed one) connects and
publishes as a device; a client registers a *will* on another thing's topic and drops its connection so the
broker publishes it for them. mosquitto runs where it is installed (CI installs it), amqtt always.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from support.device_policies import stack_policy, thing_variable_policy
from support.waiting import wait_until

from loupe_local.host.mqtt_broker import Broker
from loupe_local.local_auth import RunCredentials

pytestmark = pytest.mark.integration

IMPLEMENTATIONS = [
    "amqtt",
    pytest.param(
        "mosquitto",
        marks=pytest.mark.skipif(
            not shutil.which("mosquitto"), reason="mosquitto is not installed (apt-get install mosquitto)"
        ),
    ),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(implementation=request.param, state_dir=tmp_path, credentials=RunCredentials.generate())
    b.start()
    try:
        yield b
    finally:
        b.close()


class Client:
    """A paho client that records its CONNACK and what it receives."""

    def __init__(self, broker: Broker, client_id: str, login: tuple[str, str] | None, will: str | None = None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if login:
            self.client.username_pw_set(*login)
        if will:
            self.client.will_set(will, json.dumps({"will": client_id}), qos=1)
        self.connack: Any = None
        self.answered = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.messages.append((msg.topic, msg.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.answered.wait(10), f"{client_id}: no CONNACK"

    def _on_connect(self, c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        self.connack = reason
        self.answered.set()

    @property
    def accepted(self) -> bool:
        return not self.connack.is_failure

    def drop(self) -> None:
        """Lose the connection without DISCONNECT (what makes a broker publish the will)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_anonymous_and_wrongly_logged_in_clients_are_refused(broker: Broker) -> None:
    thing = f"cam-{uuid.uuid4().hex[:6]}"
    for login in (None, (broker.username, "guessed"), ("admin", broker.password)):
        client = Client(broker, thing, login)
        try:
            assert not client.accepted, f"the broker accepted {login}"
            assert "authori" in str(client.connack).lower() or "password" in str(client.connack).lower()
        finally:
            client.close()
    client = Client(broker, thing, (broker.username, broker.password))
    try:
        assert client.accepted, client.connack
    finally:
        client.close()


def test_a_will_on_another_things_topic_is_not_delivered(broker: Broker) -> None:
    login = (broker.username, broker.password)
    victim, attacker, witness = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("victim", "attacker", "witness"))
    listener = Client(broker, f"listener-{uuid.uuid4().hex[:6]}", login)
    subscribed = threading.Event()
    listener.client.on_subscribe = lambda *a: subscribed.set()
    listener.client.subscribe("loupe/#", qos=1)
    assert subscribed.wait(10)
    try:
        forged = f"loupe/{victim}/health"
        evil = Client(broker, attacker, login, will=forged)
        # amqtt refuses such a CONNECT (not authorized); mosquitto accepts it and checks the will against its ACL
        # when it would publish it
        assert not evil.accepted or broker.implementation == "mosquitto", evil.connack
        evil.drop()
        # a will on the client's own topic is still published: it is the sentinel that comes after
        own = Client(broker, witness, login, will=f"loupe/{witness}/health")
        assert own.accepted, own.connack
        own.drop()
        assert wait_until(lambda: any(t == f"loupe/{witness}/health" for t, _ in listener.messages), 15), (
            "the witness' own will was not delivered"
        )
        assert not [m for m in listener.messages if m[0] == forged], listener.messages
    finally:
        listener.close()


def _publish_as(broker: Broker, client_id: str, topic: str, *, refused: bool) -> list[str]:
    """Publish one QoS 1 message as ``client_id`` and wait for the broker's answer: with ``refused``, an MQTT 5
    PUBACK "Not authorized" (mosquitto) or the connection closed (amqtt, as IoT Core does); else the PUBACK."""
    v5 = broker.implementation == "mosquitto"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    )
    client.username_pw_set(broker.username, broker.password)
    outcome: list[str] = []
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.on_publish = lambda c, u, mid, reason, props: outcome.append("refused" if reason.is_failure else "acked")
    client.on_disconnect = lambda *a: outcome.append("disconnected")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert connected.wait(10), f"{client_id}: no CONNACK"
        client.publish(topic, b"m", qos=1)
        wanted = {"refused", "disconnected"} if refused else {"acked"}
        wait_until(lambda: bool(wanted & set(outcome)), 15)
        return outcome
    finally:
        client.loop_stop()
        client.disconnect()


def test_the_broker_holds_devices_to_the_stacks_core_device_policy(tmp_path: Path, broker: Broker) -> None:
    """A policy written with thing policy variables admits no core device (they do not resolve for Greengrass core
    devices); under the stack's policy a device publishes on its own topics and still not under another
    device's name."""
    device, other = f"loupe-device-{uuid.uuid4().hex[:6]}", f"loupe-device-{uuid.uuid4().hex[:6]}"
    own_topic = f"loupe/{device}/health"
    for name, policy in (("thing-variables", thing_variable_policy()), ("stack", stack_policy())):
        b = Broker(
            implementation=broker.implementation,
            state_dir=tmp_path / name,
            device_policy=policy,
            credentials=RunCredentials.generate(),
        )
        b.start()
        listener = Client(b, f"listener-{uuid.uuid4().hex[:6]}", (b.username, b.password))
        try:
            subscribed = threading.Event()
            listener.client.on_subscribe = lambda *a, done=subscribed: done.set()
            listener.client.subscribe("loupe/#", qos=1)
            assert subscribed.wait(10)
            if name == "thing-variables":
                answer = _publish_as(b, device, own_topic, refused=True)
                assert {"refused", "disconnected"} & set(answer), answer
            else:
                assert "acked" in _publish_as(b, device, own_topic, refused=False)
                seen = listener.messages
                assert wait_until(lambda seen=seen: (own_topic, b"m") in seen, 15)
            answer = _publish_as(b, device, f"loupe/{other}/health", refused=True)
            assert {"refused", "disconnected"} & set(answer), answer
            # the broker answered both refusals before this read: nothing it refused was routed
            assert [t for t, _ in listener.messages] == ([] if name == "thing-variables" else [own_topic])
        finally:
            listener.close()
            b.close()
