"""A checkov suppression stands only on a reason that is true of its resource.

Each rule runs against the real template (must hold) and the suppression or resource it replaced (must be caught).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from loupe_local.template import load_yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return load_yaml(TEMPLATE)["Resources"]


def _skips(res: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s.get("comment", "") for s in res.get("Metadata", {}).get("checkov", {}).get("skip", [])}


# --------------------------------------------------------------------------------------------- custom resources


def custom_resource_problems(resources: dict[str, Any]) -> list[str]:
    """CloudFormation invokes a custom resource's function asynchronously, by its ServiceToken
    (lambda/latest/dg/services-cloudformation.html): an unqualified ARN runs $LATEST, which then needs an
    EventInvokeConfig of its own with an on-failure destination, in place before the custom resource."""
    problems = []
    for name, res in resources.items():
        token = res.get("Properties", {}).get("ServiceToken")
        if not str(res.get("Type", "")).startswith("Custom::") or token is None:
            continue
        function = token.get("Fn::GetAtt", [None])[0] if isinstance(token, dict) else None
        if function is None or resources.get(function, {}).get("Type") != "AWS::Serverless::Function":
            problems.append(f"{name}: ServiceToken is not this template's function's unqualified ARN")
            continue
        configs = [
            (cid, c["Properties"])
            for cid, c in resources.items()
            if c.get("Type") == "AWS::Lambda::EventInvokeConfig"
            and c["Properties"].get("FunctionName") == {"Ref": function}
            and c["Properties"].get("Qualifier") == "$LATEST"
        ]
        if not configs:
            problems.append(f"{name}: {function} has no EventInvokeConfig for $LATEST, which CloudFormation invokes")
            continue
        cid, config = configs[0]
        if not config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"):
            problems.append(f"{name}: {cid} has no on-failure destination")
        if cid not in (res.get("DependsOn") if isinstance(res.get("DependsOn"), list) else [res.get("DependsOn")]):
            problems.append(f"{name}: does not depend on {cid}")
        reason = _skips(resources[function]).get("CKV_AWS_116", "")
        if "synchronous" in reason.lower() and "asynchronous" not in reason.lower():
            problems.append(f"{function}: CKV_AWS_116 reason claims a synchronous invocation")
    return problems


def test_the_code_publishers_failed_invocations_are_kept(resources) -> None:
    assert custom_resource_problems(resources) == []


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda r: r.pop("TrainingCodePublisherLatestInvokeConfig"), "no EventInvokeConfig for $LATEST"),
        (lambda r: r["TrainingCode"].pop("DependsOn"), "does not depend on"),
        (
            lambda r: r["TrainingCodePublisher"]["Metadata"]["checkov"]["skip"][0].update(
                comment="Invoked synchronously by CloudFormation only; failures surface as a failed stack operation."
            ),
            "claims a synchronous invocation",
        ),
    ],
)
def test_the_custom_resource_rule_catches(resources, mutate, problem: str) -> None:
    bad = copy.deepcopy(resources)
    mutate(bad)
    assert any(problem in p for p in custom_resource_problems(bad)), custom_resource_problems(bad)


# --------------------------------------------------------------------------------------------- queues


def _eventbridge_delivers_to(resources: dict[str, Any], queue: str) -> bool:
    """The queue is a target or dead-letter queue of an EventBridge rule, or of a function's EventBridge event."""
    ref = f'"{queue}"'
    for name, res in resources.items():
        if name == queue:
            continue
        if res.get("Type") == "AWS::Events::Rule" and ref in json.dumps(res.get("Properties", {})):
            return True
        if res.get("Type") == "AWS::Serverless::Function":
            for event in res.get("Properties", {}).get("Events", {}).values():
                if event.get("Type") in ("EventBridgeRule", "Schedule") and ref in json.dumps(event):
                    return True
    return False


def queue_reason_problems(resources: dict[str, Any]) -> list[str]:
    """A queue excused from a KMS key because EventBridge delivers to it must be one EventBridge delivers to."""
    return [
        f"{name}: CKV_AWS_27 cites EventBridge, which never delivers to this queue"
        for name, res in resources.items()
        if res.get("Type") == "AWS::SQS::Queue"
        and "EventBridge" in _skips(res).get("CKV_AWS_27", "")
        and not _eventbridge_delivers_to(resources, name)
    ]


def test_queue_suppressions_name_their_real_producers(resources) -> None:
    assert queue_reason_problems(resources) == []
    assert "EventBridge" not in _skips(resources["IotErrorQueue"])["CKV_AWS_27"]


def test_the_queue_rule_catches_the_copied_reason(resources) -> None:
    bad = copy.deepcopy(resources)
    bad["IotErrorQueue"]["Metadata"]["checkov"]["skip"] = [
        {
            "id": "CKV_AWS_27",
            "comment": "Encrypted with SSE-SQS; EventBridge cannot deliver to a queue under the AWS managed aws/sqs"
            " key.",
        }
    ]
    assert queue_reason_problems(bad) == [
        "IotErrorQueue: CKV_AWS_27 cites EventBridge, which never delivers to this queue"
    ]
