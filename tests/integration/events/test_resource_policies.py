"""Resource-based policies, checked where the local runtime delivers as an AWS service (issue 19).

EventBridge invokes a rule's Lambda target and sends to its dead-letter queue as ``events.amazonaws.com``, AWS IoT
invokes a topic rule's Lambda action as ``iot.amazonaws.com``: only the target's resource policy can grant a
service principal (IAM User Guide, "Policy evaluation logic"; EventBridge User Guide, "Using resource-based
policies for Amazon EventBridge"; eb-rule-dlq.html; AWS IoT, "Lambda" rule action). A template that forgets the
permission passes locally in ``audit`` with a would-deny recorded, and in ``enforce`` the delivery fails as on AWS.
A role session's request is also held against the resource's policy: an explicit Deny in a bucket policy refuses
what the role's identity policy allows. Real local EventBridge (moto + router), real MQTT, the real invoker.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from support.edge_mqtt import publish_as_device
from support.iam_gate import usage, usage_lines
from support.lambdas import function_with_on_failure_queue, queue, role_of_its_own
from support.waiting import wait_until

# these tests provoke denials on purpose: the session's zero-deny gate leaves them out
pytestmark = [pytest.mark.integration, pytest.mark.iam_would_deny]

RECORDING = """
def lambda_handler(event, context):
    return {"ok": True}
"""


@pytest.fixture(params=["audit", "enforce"])
def iam(request: pytest.FixtureRequest, local_aws: Any) -> Iterator[str]:
    before = local_aws.iam_mode
    local_aws.set_iam(request.param)
    try:
        yield request.param
    finally:
        local_aws.set_iam(before)


@pytest.fixture
def target(local_aws: Any, tmp_path: Path) -> dict[str, str]:
    return function_with_on_failure_queue(local_aws, tmp_path, RECORDING, "itest-respol")


def delivery_checks(local_aws: Any, start: int, action: str) -> list[dict[str, Any]]:
    return [
        r
        for r in usage(local_aws, start)
        if r.get("check") == "resource-policy" and r["action"] == action and r.get("operation") == "delivery"
    ]


def invocations(local_aws: Any, name: str) -> int:
    return int(local_aws.invoker.find(name).invocations)


def events_queue(local_aws: Any, name: str, rule_arn: str | None) -> tuple[str, str]:
    """A dead-letter queue; with ``rule_arn`` its policy lets EventBridge send for that rule (eb-rule-dlq.html)."""
    url, arn = queue(local_aws, name)
    if rule_arn:
        statement = {
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
        }
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        local_aws.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return url, arn


def rule_to(local_aws: Any, function_arn: str, dlq_policy: bool = True) -> dict[str, str]:
    name = f"itest-respol-{uuid.uuid4().hex[:8]}"
    events = local_aws.client("events")
    source = f"itest.{name}"
    rule_arn = events.put_rule(Name=name, EventPattern=json.dumps({"source": [source]}))["RuleArn"]
    dlq, dlq_arn = events_queue(local_aws, f"{name}-dlq", rule_arn if dlq_policy else None)
    events.put_targets(
        Rule=name,
        Targets=[
            {
                "Id": "fn",
                "Arn": function_arn,
                "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
                "DeadLetterConfig": {"Arn": dlq_arn},
            }
        ],
    )
    return {"name": name, "arn": rule_arn, "source": source, "dlq": dlq}


def put_event(local_aws: Any, source: str) -> str:
    marker = uuid.uuid4().hex
    out = local_aws.client("events").put_events(
        Entries=[{"Source": source, "DetailType": "Probe", "Detail": json.dumps({"marker": marker})}]
    )
    assert out["FailedEntryCount"] == 0
    return marker


def messages(local_aws: Any, url: str) -> list[dict[str, Any]]:
    out = local_aws.client("sqs").receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
    )
    return list(out.get("Messages", []))


def permit(local_aws: Any, function: str, principal: str, source_arn: str) -> None:
    local_aws.client("lambda").add_permission(
        FunctionName=function,
        StatementId=f"itest-{uuid.uuid4().hex[:8]}",
        Action="lambda:InvokeFunction",
        Principal=principal,
        SourceArn=source_arn,
        SourceAccount="123456789012",
    )


def test_an_eventbridge_rule_without_the_lambda_permission_is_not_delivered_in_enforce(
    local_aws: Any, iam: str, target: dict[str, str]
) -> None:
    rule = rule_to(local_aws, target["arn"])
    start = usage_lines(local_aws.state_dir)
    marker = put_event(local_aws, rule["source"])
    if iam == "enforce":
        # EventBridge's invoke is refused (AccessDeniedException, not retried): the event goes to the rule's DLQ
        dead = wait_until(lambda: messages(local_aws, rule["dlq"]), timeout=30)
        assert dead, "the refused delivery never reached the rule's dead-letter queue"
        assert json.loads(dead[0]["Body"])["detail"] == {"marker": marker}
        assert dead[0]["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "AccessDeniedException"
        assert invocations(local_aws, target["name"]) == 0
    else:
        assert wait_until(lambda: invocations(local_aws, target["name"]) == 1, timeout=30)
    denied = wait_until(lambda: delivery_checks(local_aws, start, "lambda:InvokeFunction"), timeout=30)
    assert denied and denied[0]["decision"] == "ImplicitDeny" and denied[0]["resources"] == [target["arn"]]
    assert denied[0]["principal"] == "events.amazonaws.com" and denied[0]["action"] == "lambda:InvokeFunction"
    assert denied[0]["source"] == rule["arn"]

    # the permission SAM writes for an EventBridgeRule event: the rule's events may now reach the function
    permit(local_aws, target["name"], "events.amazonaws.com", rule["arn"])
    put_event(local_aws, rule["source"])
    expected = 1 if iam == "enforce" else 2
    assert wait_until(lambda: invocations(local_aws, target["name"]) == expected, timeout=30)


def test_a_dead_letter_queue_without_a_policy_for_eventbridge_gets_nothing_in_enforce(local_aws: Any, iam: str) -> None:
    missing = f"arn:aws:lambda:{local_aws.region}:123456789012:function:itest-respol-missing-{uuid.uuid4().hex[:6]}"
    rule = rule_to(local_aws, missing, dlq_policy=False)
    start = usage_lines(local_aws.state_dir)
    put_event(local_aws, rule["source"])
    refused = wait_until(lambda: delivery_checks(local_aws, start, "sqs:SendMessage"), timeout=30)
    assert refused, "EventBridge's send to the dead-letter queue was not checked against the queue's policy"
    assert refused[0]["principal"] == "events.amazonaws.com" and refused[0]["decision"] == "ImplicitDeny"
    assert refused[0]["source"] == rule["arn"]
    if iam == "enforce":
        # the router marks the failure once it decided not to send: the sentinel for "nothing reached the queue"
        failed = wait_until(
            lambda: [f for f in local_aws.router.failures if f.get("rule") == rule["name"] and "dlq_refused" in f],
            timeout=30,
        )
        assert failed, "the event was sent to a queue whose policy does not admit EventBridge"
        assert messages(local_aws, rule["dlq"]) == []
    else:
        assert wait_until(lambda: messages(local_aws, rule["dlq"]), timeout=30)


def test_an_iot_rule_without_the_lambda_permission_goes_to_its_error_action_in_enforce(
    local_aws: Any, iam: str, target: dict[str, str]
) -> None:
    name = f"itest_respol_{uuid.uuid4().hex[:8]}"
    thing = f"loupe-device-respol-{uuid.uuid4().hex[:6]}"
    errors, errors_arn = queue(local_aws, f"{name}-errors")
    role = role_of_its_own(local_aws, f"{name}-errors-role", "iot", ["sqs:SendMessage"], errors_arn)
    local_aws.router.add_topic_rule(
        name,
        {
            "sql": f"SELECT * FROM 'loupe/{thing}/respol'",  # noqa: S608 - IoT SQL
            "actions": [{"lambda": {"functionArn": target["arn"]}}],
            "errorAction": {"sqs": {"queueUrl": errors, "roleArn": role}},
        },
    )
    rule_arn = f"arn:aws:iot:{local_aws.region}:123456789012:rule/{name}"
    start = usage_lines(local_aws.state_dir)
    publish_as_device(local_aws, thing, f"loupe/{thing}/respol", {"n": 1})
    if iam == "enforce":
        bodies = wait_until(lambda: messages(local_aws, errors), timeout=30)
        assert bodies, "the refused invoke never reached the rule's error action"
        failure = json.loads(bodies[0]["Body"])["failures"][0]
        assert failure["failedResource"] == target["arn"] and "AccessDeniedException" in failure["errorMessage"]
        assert invocations(local_aws, target["name"]) == 0
    else:
        assert wait_until(lambda: invocations(local_aws, target["name"]) == 1, timeout=30)
    denied = wait_until(lambda: delivery_checks(local_aws, start, "lambda:InvokeFunction"), timeout=30)
    assert denied and denied[0]["principal"] == "iot.amazonaws.com" and denied[0]["source"] == rule_arn

    permit(local_aws, target["name"], "iot.amazonaws.com", rule_arn)  # what LowConfidenceRulePermission grants
    publish_as_device(local_aws, thing, f"loupe/{thing}/respol", {"n": 2})
    expected = 1 if iam == "enforce" else 2
    assert wait_until(lambda: invocations(local_aws, target["name"]) == expected, timeout=30)


def test_an_explicit_deny_in_a_bucket_policy_refuses_what_the_role_policy_allows(local_aws: Any, iam: str) -> None:
    """IngestImageFunction's role may put under quarantine/ (its identity policy); the bucket policy denies it one
    prefix: the deny wins (same account: an explicit Deny in either policy refuses)."""
    session = local_aws.function_session("IngestImageFunction")
    assert session is not None
    bucket = local_aws.physical("RawBucket")
    prefix = f"quarantine/itest-respol-{uuid.uuid4().hex[:8]}/"
    s3_admin = local_aws.client("s3")
    original = s3_admin.get_bucket_policy(Bucket=bucket)["Policy"]
    policy = json.loads(original)
    policy["Statement"].append(
        {
            "Sid": "ItestDenyOnePrefix",
            "Effect": "Deny",
            "Principal": {"AWS": session.role_arn},
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
        }
    )
    s3 = boto3.Session(region_name=local_aws.region, **session.boto_kwargs()).client(
        "s3", endpoint_url=local_aws.endpoint, config=Config(retries={"max_attempts": 1})
    )
    s3_admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    try:
        s3.put_object(Bucket=bucket, Key=f"quarantine/itest-respol-allowed-{uuid.uuid4().hex[:6]}", Body=b"x")
        start = usage_lines(local_aws.state_dir)
        if iam == "enforce":
            with pytest.raises(ClientError) as refused:
                s3.put_object(Bucket=bucket, Key=f"{prefix}x", Body=b"x")
            assert refused.value.response["Error"]["Code"] == "AccessDenied"
            assert "explicit deny in a resource-based policy" in refused.value.response["Error"]["Message"]
            with pytest.raises(ClientError):
                s3_admin.head_object(Bucket=bucket, Key=f"{prefix}x")
        else:
            s3.put_object(Bucket=bucket, Key=f"{prefix}x", Body=b"x")
        puts = wait_until(lambda: [r for r in usage(local_aws, start) if r["action"] == "s3:PutObject"], timeout=10)
        record = puts[0]
        assert record["decision"] == "ExplicitDeny" and record["check"] == "resource-policy"
        assert "ItestDenyOnePrefix" in record["reason"]
    finally:
        s3_admin.put_bucket_policy(Bucket=bucket, Policy=original)
