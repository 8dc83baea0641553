"""The stack as shipped grants every delivery AWS services make to it (issue 19): each EventBridge rule's Lambda
targets and dead-letter queue admit ``events.amazonaws.com`` for that rule, each IoT topic rule's Lambda action
admits ``iot.amazonaws.com``, each alarm's SNS action admits ``cloudwatch.amazonaws.com`` - read from the policies
provisioned into the local AWS (Lambda permissions, queue policy, topic policy), evaluated as the services' calls
are (``loupe_local.iam.resource_policies``). A template that forgets one fails here, as its event would be lost on
AWS."""

from __future__ import annotations

from typing import Any

import pytest

from loupe_local.iam.resource_policies import ServiceDelivery

pytestmark = pytest.mark.integration


def test_every_delivery_the_stack_declares_is_granted_by_its_targets_resource_policy(local_aws: Any) -> None:
    records: list[dict[str, Any]] = []
    check = ServiceDelivery(records.extend, "enforce", "123456789012", local_aws.region)
    events, iot = local_aws.client("events"), local_aws.client("iot")
    kinds: dict[str, int] = {}

    def granted(kind: str, principal: str, action: str, target: str, source: str) -> None:
        kinds[kind] = kinds.get(kind, 0) + 1
        assert check.allows(principal, action, target, source), records[-1]["reason"]

    for res in local_aws.resources.values():
        if res.skipped:
            continue
        if res.type == "AWS::Events::Rule":
            for target in events.list_targets_by_rule(Rule=res.ref)["Targets"]:
                if target["Arn"].split(":")[2] == "lambda":
                    granted(
                        "rule->lambda", "events.amazonaws.com", "lambda:InvokeFunction", target["Arn"], res.attrs["Arn"]
                    )
                dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
                if dlq:
                    granted("rule->dlq", "events.amazonaws.com", "sqs:SendMessage", dlq, res.attrs["Arn"])
        elif res.type == "AWS::IoT::TopicRule":
            for action in iot.get_topic_rule(ruleName=res.ref)["rule"]["actions"]:
                if "lambda" in action:
                    fn = action["lambda"]["functionArn"]
                    granted("iot->lambda", "iot.amazonaws.com", "lambda:InvokeFunction", fn, res.attrs["Arn"])
        elif res.type == "AWS::CloudWatch::Alarm":
            for topic in res.properties.get("AlarmActions", []):
                granted("alarm->sns", "cloudwatch.amazonaws.com", "sns:Publish", str(topic), res.attrs["Arn"])
    # the template has each kind of delivery: a check that found none would prove nothing
    assert set(kinds) == {"rule->lambda", "rule->dlq", "iot->lambda", "alarm->sns"}, kinds
