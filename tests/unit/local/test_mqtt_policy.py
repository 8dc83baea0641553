"""The local broker's ACL is EdgeDevicePolicy's iot:Publish with the client ID as the thing name."""

from __future__ import annotations

import pytest

from loupe_local.host.mqtt_policy import may_publish, mosquitto_acl


@pytest.mark.parametrize(
    ("client_id", "topic", "allowed"),
    [
        ("cam-1", "loupe/cam-1/low-confidence", True),
        ("cam-1", "loupe/cam-1/health", True),
        ("cam-1", "$aws/things/cam-1/shadow/update", True),
        ("cam-1", "loupe/cam-2/low-confidence", False),  # another device's topic
        ("cam-1", "loupe/cam-10/health", False),  # a prefix of a thing name is not the thing
        ("cam-1", "loupe/cam-1", False),  # the policy's resource is loupe/<thing>/*
        ("cam-1", "other/cam-1/x", False),
        ("loupe-iot-rules-1a2b3c", "loupe/cam-1/health", False),  # a client that is not that thing
        ("", "loupe//health", False),
        ("+", "loupe/+/health", False),
    ],
)
def test_a_client_publishes_only_under_its_own_thing_name(client_id: str, topic: str, allowed: bool) -> None:
    assert may_publish(client_id, topic) is allowed


def test_the_mosquitto_acl_states_the_same_rule() -> None:
    lines = mosquitto_acl().splitlines()
    assert "pattern write loupe/%c/#" in lines and "pattern write $aws/things/%c/#" in lines
    # `pattern` applies to every client: a top-level `topic` line would cover anonymous clients only, and the broker
    # has none (every client logs in)
    assert "pattern read #" in lines and not any(line.startswith("topic") for line in lines)
