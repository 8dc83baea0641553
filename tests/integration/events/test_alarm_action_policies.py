"""An alarm's SNS action is published by CloudWatch as ``cloudwatch.amazonaws.com``: the topic's access policy must
admit it (CloudWatch User Guide, "Using Amazon CloudWatch alarms" / AlarmThatSendsEmail.html; IAM User Guide,
"Policy evaluation logic": a service principal is granted by the resource policy only). In ``enforce`` an alarm
whose topic does not admit CloudWatch publishes nothing; in ``audit`` it publishes and a would-deny is recorded.
Alarms of the test's own, evaluated by the local runtime's alarm evaluator; SNS -> SQS subscriptions to observe."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from support.iam_gate import usage, usage_lines
from support.lambdas import queue
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.iam_would_deny]

NAMESPACE = "Itest/Respol"


@pytest.fixture(params=["audit", "enforce"])
def iam(request: pytest.FixtureRequest, local_aws: Any) -> Iterator[str]:
    before = local_aws.iam_mode
    local_aws.set_iam(request.param)
    try:
        yield request.param
    finally:
        local_aws.set_iam(before)


def topic_to_queue(local_aws: Any, name: str, admits_cloudwatch: bool) -> tuple[str, str]:
    """(topic ARN, queue URL): a topic subscribed by a queue; its policy admits CloudWatch or only the account's
    principals (no statement names the service)."""
    sns = local_aws.client("sns")
    topic = sns.create_topic(Name=name)["TopicArn"]
    principal = {"Service": "cloudwatch.amazonaws.com"} if admits_cloudwatch else {"AWS": "123456789012"}
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sns:Publish", "Resource": topic}],
    }
    sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(policy))
    url, arn = queue(local_aws, f"{name}-q")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return topic, url


def alarm_on(local_aws: Any, name: str, metric: str, topic: str) -> dict[str, Any]:
    spec = {
        "Namespace": NAMESPACE,
        "MetricName": metric,
        "Statistic": "Maximum",
        "Period": 1800,  # 30 s at the session's alarm time scale (60x): the datapoint stays in the window
        "EvaluationPeriods": 1,
        "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold",
        "AlarmActions": [topic],
    }
    cloudwatch = local_aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName=name, **spec)
    arn = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"]
    return {"name": name, "arn": arn, **spec}


def received(local_aws: Any, url: str) -> list[str]:
    out = local_aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [m["Body"] for m in out.get("Messages", [])]


def test_an_alarm_action_to_a_topic_that_does_not_admit_cloudwatch_publishes_nothing_in_enforce(
    local_aws: Any, iam: str
) -> None:
    run = uuid.uuid4().hex[:8]
    refused_topic, refused_queue = topic_to_queue(local_aws, f"itest-respol-refused-{run}", admits_cloudwatch=False)
    granted_topic, granted_queue = topic_to_queue(local_aws, f"itest-respol-granted-{run}", admits_cloudwatch=True)
    metric = f"Breach{run}"
    # evaluated in this order: the granted alarm's message is the sentinel that the refused one was decided
    alarms = [
        alarm_on(local_aws, f"itest-respol-refused-{run}", metric, refused_topic),
        alarm_on(local_aws, f"itest-respol-granted-{run}", metric, granted_topic),
    ]
    start = usage_lines(local_aws.state_dir)
    local_aws.alarms.alarms.extend(alarms)
    try:
        local_aws.client("cloudwatch").put_metric_data(
            Namespace=NAMESPACE, MetricData=[{"MetricName": metric, "Value": 1.0, "Timestamp": datetime.now(UTC)}]
        )
        assert wait_until(lambda: received(local_aws, granted_queue), timeout=60), "the granted alarm never published"
    finally:
        for alarm in alarms:
            local_aws.alarms.alarms.remove(alarm)
    if iam == "enforce":
        assert received(local_aws, refused_queue) == []
    else:
        assert wait_until(lambda: received(local_aws, refused_queue), timeout=30)
    checks = [r for r in usage(local_aws, start) if r.get("principal") == "cloudwatch.amazonaws.com"]
    decided = {c["resources"][0]: c["decision"] for c in checks}
    assert decided == {refused_topic: "ImplicitDeny", granted_topic: "Allow"}
    assert {c["source"] for c in checks} == {a["arn"] for a in alarms}
