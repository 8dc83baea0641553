"""Narrow grants where AWS lets a resource be named: the devices' client IDs and log groups, the health function's
writes to the deployments table, the pipeline's job names.

Each rule runs against the real template (must hold) and the grant it replaced (must be caught).
"""

from __future__ import annotations

import copy
import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

from loupe_local.template import load_yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"
ARN = "arn:aws:iot:us-east-1:123456789012"


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return load_yaml(TEMPLATE)["Resources"]


def _sub_text(value: Any) -> str:
    """The text of a !Sub resource with the template's pseudo parameters and ${!x} escapes resolved."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    for name, real in (("AWS::Partition", "aws"), ("AWS::Region", "us-east-1"), ("AWS::AccountId", "123456789012")):
        text = text.replace("${" + name + "}", real)
    return text.replace("${!", "${")


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    props = resource.get("Properties", {})
    docs = [props.get("PolicyDocument", {})]
    docs += [p.get("PolicyDocument", {}) for p in props.get("Policies", []) if isinstance(p, dict)]
    docs += [p for p in props.get("Policies", []) if isinstance(p, dict) and "Statement" in p]
    return [st for doc in docs for st in _listify(doc.get("Statement", []))]


# --------------------------------------------------------------------------------------------- device client IDs


def may_connect(policy: dict[str, Any], client_id: str) -> bool:
    """IoT Core's iot:Connect decision for a Greengrass core device connecting with ``client_id``: thing policy
    variables are not supported for core devices (Greengrass developer guide, "Device authentication and
    authorization"), so a resource that uses one never matches; "*" is the only wildcard (# and + are literal)."""
    prefix = "loupe-device-"  # CoreDeviceThingNamePrefix's default
    for st in _statements(policy):
        if st.get("Effect") != "Allow" or "iot:Connect" not in _listify(st.get("Action")):
            continue
        for resource in _listify(st.get("Resource")):
            pattern = _sub_text(resource).replace("${CoreDeviceThingNamePrefix}", prefix)
            if "${" in pattern:
                continue
            if fnmatch.fnmatchcase(f"{ARN}:client/{client_id}", pattern.replace("[", "[[]")):
                return True
    return False


def test_a_core_device_connects_by_the_fleets_name_prefix(resources) -> None:
    # Changed with the thing-variable policy's removal: the documented core-device policy names devices by a
    # thing-name prefix, so a device also connects with the nucleus' suffixed client IDs (and, within the prefix,
    # as another Loupe device: SECURITY.md); a device outside the prefix does not connect at all.
    policy = resources["EdgeDevicePolicy"]
    assert may_connect(policy, "loupe-device-1")
    assert may_connect(policy, "loupe-device-1#2")  # the nucleus' second connection
    assert not may_connect(policy, "team-b-cam"), "another team's device in the shared group"
    assert not may_connect(policy, "loupe-devic")


def test_the_connect_rule_catches_a_thing_variable(resources) -> None:
    old = copy.deepcopy(resources["EdgeDevicePolicy"])
    for st in old["Properties"]["PolicyDocument"]["Statement"]:
        if "iot:Connect" in _listify(st["Action"]):
            st["Resource"] = {"Fn::Sub": f"{ARN}:client/${{!iot:Connection.Thing.ThingName}}"}
    assert not may_connect(old, "loupe-device-1")


# --------------------------------------------------------------------------------------------- device logs


def log_resource_problems(role: dict[str, Any]) -> list[str]:
    allowed = (
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/greengrass/GreengrassSystemComponent/us-east-1/System",
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/greengrass/UserComponent/us-east-1/com.loupe.",
    )
    problems = []
    for st in _statements(role):
        if not any(str(a).startswith("logs:") for a in _listify(st.get("Action"))):
            continue
        for resource in _listify(st.get("Resource")):
            text = _sub_text(resource)
            if not text.startswith(allowed):
                problems.append(f"{text}: not the nucleus' log group or one of Loupe's components'")
    return problems


def test_devices_write_only_the_nucleus_and_loupe_component_log_groups(resources) -> None:
    role = resources["GreengrassTokenExchangeRole"]
    assert log_resource_problems(role) == []
    assert any("logs:PutLogEvents" in _listify(st.get("Action")) for st in _statements(role))


def test_the_log_rule_catches_every_greengrass_log_group() -> None:
    role = {
        "Properties": {
            "Policies": [
                {
                    "PolicyDocument": {
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["logs:PutLogEvents"],
                                "Resource": {
                                    "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:"
                                    "${AWS::AccountId}:log-group:/aws/greengrass/*"
                                },
                            }
                        ]
                    }
                }
            ]
        }
    }
    assert log_resource_problems(role)


# --------------------------------------------------------------------------------------------- table writes


def put_item_problems(resources: dict[str, Any]) -> list[str]:
    """A function's own dynamodb:PutItem / UpdateItem grant (not a SAM policy template) names the keys it writes."""
    problems = []
    for name, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        for policy in res.get("Properties", {}).get("Policies", []):
            for st in _listify(policy.get("Statement", [])) if isinstance(policy, dict) else []:
                for action in ("PutItem", "UpdateItem"):
                    if f"dynamodb:{action}" not in _listify(st.get("Action")):
                        continue
                    keys = json.dumps(st.get("Condition", {}))
                    if "dynamodb:LeadingKeys" not in keys:
                        problems.append(f"{name}: {action} on a whole table, with no dynamodb:LeadingKeys condition")
    return problems


def test_put_item_grants_name_their_leading_keys(resources) -> None:
    assert put_item_problems(resources) == []
    statement = next(
        st
        for policy in resources["EdgeHealthFunction"]["Properties"]["Policies"]
        for st in _listify(policy.get("Statement", []))
        if "dynamodb:PutItem" in _listify(st.get("Action"))
    )
    assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["DEVICE#*"]}}
    shadow = next(
        st
        for policy in resources["EdgeHealthFunction"]["Properties"]["Policies"]
        for st in _listify(policy.get("Statement", []))
        if "dynamodb:UpdateItem" in _listify(st.get("Action"))
    )  # the window counters: only the candidates' (shadow) and the served models' (canary) items
    assert shadow["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["SHADOW#*", "MODEL#*"]}}


def test_the_put_item_rule_catches_a_whole_table_grant(resources) -> None:
    bad = copy.deepcopy(resources)
    for policy in bad["EdgeHealthFunction"]["Properties"]["Policies"]:
        for st in _listify(policy.get("Statement", [])):
            st.pop("Condition", None)
    assert put_item_problems(bad) == [
        "EdgeHealthFunction: PutItem on a whole table, with no dynamodb:LeadingKeys condition",
        "EdgeHealthFunction: UpdateItem on a whole table, with no dynamodb:LeadingKeys condition",
    ]


# --------------------------------------------------------------------------------------------- pipeline jobs


def test_the_pipeline_role_manages_only_pipeline_jobs(resources) -> None:
    """SageMaker Pipelines names each step's job pipelines-<execution>-<step>-<suffix>."""
    statements = _statements(resources["SageMakerExecutionRole"])
    (steps,) = [st for st in statements if st.get("Sid") == "PipelineSteps"]
    resources_text = [_sub_text(r) for r in _listify(steps["Resource"])]
    assert resources_text == [
        "arn:aws:sagemaker:us-east-1:123456789012:processing-job/pipelines-*",
        "arn:aws:sagemaker:us-east-1:123456789012:training-job/pipelines-*",
    ]
