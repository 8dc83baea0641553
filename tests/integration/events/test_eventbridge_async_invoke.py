"""EventBridge -> Lambda is an asynchronous invoke (with-eventbridge.html, invocation-async.html): a handler error
is retried by Lambda per the function's EventInvokeConfig and then goes to its on-failure destination; the rule
target's RetryPolicy and DeadLetterConfig only see a delivery that fails (eb-rule-dlq.html). Real local
EventBridge (moto + router), the real invoker."""

from __future__ import annotations

import json
import uuid

import pytest
from support.lambdas import function_with_on_failure_queue, let_eventbridge_deliver, queue
from support.waiting import wait_until

pytestmark = pytest.mark.integration

FAILING = """
def lambda_handler(event, context):
    raise RuntimeError("ledger unavailable for " + str(event["detail"].get("marker")))
"""


@pytest.fixture
def failing_function(local_aws, tmp_path):
    """A function that always raises, with an on-failure destination queue of its own."""
    return function_with_on_failure_queue(local_aws, tmp_path, FAILING, "itest-eb-failing", max_event_age=3600)


def _rule(local_aws, function_arn: str) -> dict:
    """A rule on a source of its own, its one Lambda target with a RetryPolicy and a DeadLetterConfig."""
    name = f"itest-eb-rule-{uuid.uuid4().hex[:8]}"
    source = f"itest.{name}"
    dlq, dlq_arn = queue(local_aws, f"{name}-dlq")
    events = local_aws.client("events")
    rule_arn = events.put_rule(Name=name, EventPattern=json.dumps({"source": [source]}))["RuleArn"]
    events.put_targets(
        Rule=name,
        Targets=[
            {
                "Id": "fn",
                "Arn": function_arn,
                "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60},
                "DeadLetterConfig": {"Arn": dlq_arn},
            }
        ],
    )
    exists = ":function:itest-eb-missing-" not in function_arn
    let_eventbridge_deliver(local_aws, rule_arn, function=function_arn if exists else None, queue=dlq_arn)
    return {"name": name, "arn": rule_arn, "source": source, "dlq": dlq}


def _put(local_aws, source: str, marker: str) -> None:
    out = local_aws.client("events").put_events(
        Entries=[{"Source": source, "DetailType": "Probe", "Detail": json.dumps({"marker": marker})}]
    )
    assert out["FailedEntryCount"] == 0


def _messages(local_aws, queue_url: str) -> list[dict]:
    out = local_aws.client("sqs").receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
    )
    return out.get("Messages", [])


def test_a_handler_error_is_retried_by_lambda_then_sent_to_the_on_failure_destination_not_the_rule_dlq(
    local_aws, failing_function
) -> None:
    rule = _rule(local_aws, failing_function["arn"])
    marker = uuid.uuid4().hex
    _put(local_aws, rule["source"], marker)

    records = wait_until(lambda: _messages(local_aws, failing_function["destination"]), timeout=40)
    assert records, "the failed invocation never reached the function's on-failure destination"
    record = json.loads(records[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3  # the first attempt and MaximumRetryAttempts 2
    assert record["requestContext"]["functionArn"].startswith(failing_function["arn"])
    assert record["requestPayload"]["source"] == rule["source"]
    assert record["requestPayload"]["detail"] == {"marker": marker}
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert marker in record["responsePayload"]["errorMessage"]
    assert local_aws.invoker.find(failing_function["name"]).invocations == 3
    assert _messages(local_aws, rule["dlq"]) == [], "a handler error went to the rule target's DLQ"


def test_a_target_function_that_does_not_exist_ends_in_the_rule_targets_dlq(local_aws) -> None:
    missing = f"arn:aws:lambda:{local_aws.region}:123456789012:function:itest-eb-missing-{uuid.uuid4().hex[:6]}"
    rule = _rule(local_aws, missing)
    marker = uuid.uuid4().hex
    _put(local_aws, rule["source"], marker)

    messages = wait_until(lambda: _messages(local_aws, rule["dlq"]), timeout=30)
    assert messages, "the undeliverable event never reached the rule target's DLQ"
    event = json.loads(messages[0]["Body"])  # EventBridge puts the event itself in the DLQ
    assert event["source"] == rule["source"] and event["detail"] == {"marker": marker}
    attributes = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "ResourceNotFoundException"
    assert attributes["ERROR_MESSAGE"]
    assert attributes["RULE_ARN"] == rule["arn"]
    assert attributes["TARGET_ARN"] == missing
