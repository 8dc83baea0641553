"""template.yaml ties what a device may write and say to its own thing name."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest

from loupe_local.host.iot_sql import parse
from loupe_local.template import load_yaml

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return load_yaml(TEMPLATE)["Resources"]


def _iam_allows(pattern: str, resource: str) -> bool:
    # IAM resource wildcards: * any run of characters (slashes included), ? one character
    return re.fullmatch(fnmatch.translate(pattern).replace("(?s:", "(?:", 1), resource) is not None


def _resolve(sub: Any, thing: str) -> str:
    text = sub["Fn::Sub"] if isinstance(sub, dict) else sub
    # the request context the IoT credentials provider gives the token exchange role's session
    text = text.replace("${!credentials-iot:ThingName}", thing)
    return text.replace("${RawBucket.Arn}", "arn:aws:s3:::raw").replace("${ArtifactBucket.Arn}", "arn:aws:s3:::art")


def test_a_devices_credentials_upload_only_under_its_own_thing(resources) -> None:
    statements = [
        st
        for policy in resources["GreengrassTokenExchangeRole"]["Properties"]["Policies"]
        for st in policy["PolicyDocument"]["Statement"]
    ]
    puts = [
        st for st in statements if "s3:PutObject" in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    ]
    assert puts, "the devices must be able to upload uncertain frames"

    def may_put(thing: str, key: str) -> bool:
        for st in puts:
            targets = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            if any(_iam_allows(_resolve(t, thing), f"arn:aws:s3:::raw/{key}") for t in targets):
                return True
        return False

    assert may_put("cam-1", "raw/feedback/cam-1/f.jpg")
    assert not may_put("cam-1", "raw/feedback/cam-2/f.jpg")
    assert not may_put("cam-1", "raw/line-3/f.jpg")


@pytest.mark.parametrize("rule", ["LowConfidenceTopicRule", "HealthTopicRule"])
def test_the_topic_rules_take_the_thing_from_the_topic(resources, rule) -> None:
    sql = parse(resources[rule]["Properties"]["TopicRulePayload"]["Sql"])
    kind = sql.topic_filter.rsplit("/", 1)[-1]
    forged = b'{"thing": "cam-2", "source_thing": "cam-2", "topic": "loupe/cam-2/x"}'
    matched, out = sql.evaluate(f"loupe/cam-1/{kind}", forged)
    assert matched and out["source_thing"] == "cam-1" and out["topic"] == f"loupe/cam-1/{kind}"
    assert out["thing"] == "cam-2"  # the claim is kept, for the handler to compare and refuse


def test_the_device_policy_publishes_only_under_the_fleets_things(resources) -> None:
    # Changed with the thing-variable policy's removal (not supported for core devices): the policy names the
    # fleet's devices by CoreDeviceThingNamePrefix; the local broker adds the client ID as the device's identity.
    from loupe_local.host.mqtt_policy import PUBLISH_PREFIXES

    document = resources["EdgeDevicePolicy"]["Properties"]["PolicyDocument"]
    publish = [st for st in document["Statement"] if "iot:Publish" in _listify(st["Action"])]
    allowed = {r["Fn::Sub"].split(":topic/", 1)[1] for st in publish for r in _listify(st["Resource"])}
    prefix = "${CoreDeviceThingNamePrefix}*/"
    assert "loupe/" + prefix + "*" in allowed
    assert all(topic.startswith(tuple(p.replace("%c/", prefix) for p in PUBLISH_PREFIXES)) for topic in allowed)


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
