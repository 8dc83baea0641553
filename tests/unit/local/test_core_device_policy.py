"""The core devices' IoT policy (template.yaml EdgeDevicePolicy), evaluated the way IoT Core evaluates a
Greengrass core device's policy: thing policy variables are not supported there (Greengrass developer guide,
"Device authentication and authorization for AWS IoT Greengrass"), so a policy written with them admits no core
device. The local broker holds devices to the same evaluation (``loupe_local.host.mqtt_policy.CoreDevicePolicy``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.device_policies import ARN, THING_VARIABLE_POLICY, stack_policy

from loupe_local.host.mqtt_policy import CoreDevicePolicy, PolicyError, may_publish, mosquitto_acl
from loupe_local.template import load_yaml

ROOT = Path(__file__).resolve().parents[3]
DEVICE = "loupe-device-1"


@pytest.fixture(scope="module")
def policy() -> CoreDevicePolicy:
    return stack_policy()


def test_a_thing_variable_policy_admits_no_core_device() -> None:
    old = CoreDevicePolicy(THING_VARIABLE_POLICY, ARN)
    assert not old.allows("iot:Connect", f"client/{DEVICE}", DEVICE)
    assert not old.allows("iot:Publish", f"topic/loupe/{DEVICE}/health", DEVICE)
    assert not may_publish(DEVICE, f"loupe/{DEVICE}/health", old)
    # what needs no thing variable still resolves
    assert old.allows("iot:AssumeRoleWithCertificate", "rolealias/stk-edge", DEVICE)


def test_the_stacks_policy_admits_a_core_device(policy: CoreDevicePolicy) -> None:
    # connections: the thing name, and the nucleus' further connections (a suffix to the thing name)
    assert policy.allows("iot:Connect", f"client/{DEVICE}", DEVICE)
    assert policy.allows("iot:Connect", f"client/{DEVICE}#2", f"{DEVICE}#2")
    for topic in (
        f"loupe/{DEVICE}/health",
        f"loupe/{DEVICE}/low-confidence",
        f"$aws/things/{DEVICE}/jobs/job-1/update",
        f"$aws/things/{DEVICE}/shadow/update",
        f"$aws/things/{DEVICE}/greengrassv2/health/json",
    ):
        assert policy.allows("iot:Publish", f"topic/{topic}", DEVICE), topic
        assert may_publish(DEVICE, topic, policy), topic
    assert policy.allows("iot:Subscribe", f"topicfilter/$aws/things/{DEVICE}/jobs/notify-next", DEVICE)
    assert policy.allows("iot:Receive", f"topic/$aws/things/{DEVICE}/jobs/notify-next", DEVICE)
    assert policy.allows("iot:UpdateThingShadow", f"thing/{DEVICE}", DEVICE)
    assert policy.allows("iot:AssumeRoleWithCertificate", "rolealias/stk-edge-token-exchange", DEVICE)
    # nucleus 2.5.0+: a device removed from the thing group drops the group's components
    assert policy.allows("greengrass:ListThingGroupsForCoreDevice", "*", DEVICE)


def test_the_policy_names_no_thing_variable() -> None:
    text = str(load_yaml(ROOT / "template.yaml")["Resources"]["EdgeDevicePolicy"])
    assert "iot:Connection.Thing" not in text


@pytest.mark.parametrize(
    ("client_id", "topic"),
    [
        ("team-b-cam", "loupe/team-b-cam/health"),  # another team's device in the shared thing group
        ("team-b-cam", f"loupe/{DEVICE}/health"),
        (DEVICE, "loupe/loupe-device-2/low-confidence"),  # another Loupe device's topic (see the note below)
        (DEVICE, f"loupe/{DEVICE}"),  # the resource is loupe/<thing>/*
        (DEVICE, f"$aws/things/{DEVICE}/tunnels/notify"),  # not in the documented topic set
        (DEVICE, f"other/{DEVICE}/x"),
    ],
)
def test_a_device_publishes_on_no_one_elses_topics(policy: CoreDevicePolicy, client_id: str, topic: str) -> None:
    # Locally the client ID stands for the device's certificate and thing, so a device publishes only under its
    # own name. In AWS the prefix policy alone would let one Loupe device publish under another Loupe device's
    # name (SECURITY.md: devices sharing the prefix trust one another); it never lets a device outside the prefix.
    assert not may_publish(client_id, topic, policy)


def test_a_device_outside_the_prefix_cannot_connect(policy: CoreDevicePolicy) -> None:
    assert not policy.allows("iot:Connect", "client/team-b-cam", "team-b-cam")
    assert not policy.allows("iot:Publish", "topic/loupe/team-b-cam/health", "team-b-cam")
    assert not policy.allows("iot:UpdateThingShadow", "thing/team-b-cam", "team-b-cam")


def test_the_prefix_is_the_deployers(policy: CoreDevicePolicy) -> None:
    other = stack_policy({"WorkteamArn": "x", "CoreDeviceThingNamePrefix": "plant7-"})
    assert other.allows("iot:Connect", "client/plant7-cam", "plant7-cam")
    assert not other.allows("iot:Connect", f"client/{DEVICE}", DEVICE)


def test_mqtt_wildcards_are_literal_in_a_policy() -> None:
    literal = CoreDevicePolicy(
        {"Statement": [{"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}topic/loupe/+/health"}]}, ARN
    )
    assert literal.allows("iot:Publish", "topic/loupe/+/health", "x")
    assert not literal.allows("iot:Publish", "topic/loupe/cam-1/health", "x")


def test_an_explicit_deny_wins(policy: CoreDevicePolicy) -> None:
    document = {
        "Statement": [
            *policy.statements,
            {"Effect": "Deny", "Action": "iot:Publish", "Resource": f"{ARN}topic/loupe/*/low-confidence"},
        ]
    }
    denied = CoreDevicePolicy(document, ARN)
    assert not denied.allows("iot:Publish", f"topic/loupe/{DEVICE}/low-confidence", DEVICE)
    assert denied.allows("iot:Publish", f"topic/loupe/{DEVICE}/health", DEVICE)


def test_a_condition_the_broker_cannot_evaluate_is_refused_by_name() -> None:
    document = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "true"}},
            }
        ]
    }
    with pytest.raises(PolicyError, match="aws:SecureTransport"):
        CoreDevicePolicy(document, ARN)


def test_the_mosquitto_acl_grants_nothing_for_a_thing_variable_policy(policy: CoreDevicePolicy) -> None:
    assert not [
        line for line in mosquitto_acl(CoreDevicePolicy(THING_VARIABLE_POLICY, ARN)).splitlines() if "write" in line
    ]
    lines = mosquitto_acl(policy).splitlines()
    assert "pattern write loupe/%c/#" in lines and "pattern write $aws/things/%c/#" in lines
