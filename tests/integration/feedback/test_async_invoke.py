"""IoT rule -> Lambda is an asynchronous invoke (iot-lambda-rule-action.html, lambda invocation-async.html):
a handler error is retried by Lambda and then goes to the function's on-failure destination; the rule's error
action fires only when the invoke itself fails. Real MQTT on loopback, the real router, the real invoker."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from support.edge_mqtt import publish_as_device
from support.lambdas import function_with_on_failure_queue, role_of_its_own
from support.waiting import wait_until

pytestmark = pytest.mark.integration

FAILING = """
def lambda_handler(event, context):
    raise RuntimeError("downstream unavailable for " + str(event.get("marker")))
"""


@pytest.fixture
def failing_function(local_aws, tmp_path):
    """A function that always raises, with an on-failure destination queue of its own."""
    return function_with_on_failure_queue(local_aws, tmp_path, FAILING, "itest-failing")


def _rule(local_aws, name: str, thing: str, function_arn: str) -> str:
    sqs = local_aws.client("sqs")
    errors = sqs.create_queue(QueueName=f"{name}-errors")["QueueUrl"]
    errors_arn = sqs.get_queue_attributes(QueueUrl=errors, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # the rule's error action sends with a role of the test's own, allowed to send to this test's queue only
    role = role_of_its_own(local_aws, f"{name}-errors-role", "iot", ["sqs:SendMessage"], errors_arn)
    if local_aws.router.invoker.find(function_arn) is not None:
        # AWS IoT invokes as iot.amazonaws.com: the function's policy must grant it this rule
        # (iot-lambda-rule-action.html); the local AWS refuses the invoke otherwise, as AWS does
        local_aws.client("lambda").add_permission(
            FunctionName=function_arn,
            StatementId=f"iot-{name}",
            Action="lambda:InvokeFunction",
            Principal="iot.amazonaws.com",
            SourceArn=f"arn:aws:iot:{local_aws.region}:123456789012:rule/{name}",
        )
    local_aws.router.add_topic_rule(
        name,
        {
            "sql": f"SELECT *, topic(2) AS source_thing FROM 'loupe/{thing}/probe'",  # noqa: S608 - IoT SQL
            "actions": [{"lambda": {"functionArn": function_arn}}],
            "errorAction": {"sqs": {"queueUrl": errors, "roleArn": role}},
        },
    )
    return errors


def _messages(local_aws, queue_url: str) -> list[dict]:
    out = local_aws.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(m["Body"]) for m in out.get("Messages", [])]


def test_a_handler_error_is_retried_then_sent_to_the_on_failure_destination_not_the_error_action(
    local_aws, failing_function
) -> None:
    thing = f"loupe-device-probe-{uuid.uuid4().hex[:6]}"
    errors = _rule(local_aws, f"itest_rule_{uuid.uuid4().hex[:8]}", thing, failing_function["arn"])
    marker = uuid.uuid4().hex
    publish_as_device(local_aws, thing, f"loupe/{thing}/probe", {"marker": marker})

    records = wait_until(lambda: _messages(local_aws, failing_function["destination"]), timeout=40)
    assert records, "the failed invocation never reached the on-failure destination"
    record = records[0]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3  # the first attempt and 2 retries
    assert record["requestPayload"] == {"marker": marker, "source_thing": thing}
    assert (
        record["responsePayload"]["errorType"] == "RuntimeError" and marker in record["responsePayload"]["errorMessage"]
    )
    assert local_aws.invoker.find(failing_function["name"]).invocations == 3
    assert _messages(local_aws, errors) == [], "the rule's error action fired for a handler error"


def test_an_invoke_that_fails_goes_to_the_rules_error_action(local_aws) -> None:
    thing = f"loupe-device-probe-{uuid.uuid4().hex[:6]}"
    missing = f"arn:aws:lambda:{local_aws.region}:123456789012:function:itest-missing-{uuid.uuid4().hex[:6]}"
    name = f"itest_rule_{uuid.uuid4().hex[:8]}"
    errors = _rule(local_aws, name, thing, missing)
    marker = uuid.uuid4().hex
    publish_as_device(local_aws, thing, f"loupe/{thing}/probe", {"marker": marker})

    bodies = wait_until(lambda: _messages(local_aws, errors), timeout=30)
    assert bodies, "the failed invoke never reached the rule's error action"
    body = bodies[0]
    assert body["ruleName"] == name and body["topic"] == f"loupe/{thing}/probe"
    assert json.loads(base64.b64decode(body["base64OriginalPayload"])) == {"marker": marker}
    failure = body["failures"][0]
    assert failure["failedAction"] == "LambdaAction" and failure["failedResource"] == missing
    assert "ResourceNotFoundException" in failure["errorMessage"]


def test_an_event_invoke_through_the_lambda_api_follows_the_same_retries(local_aws, failing_function) -> None:
    marker = uuid.uuid4().hex
    out = local_aws.client("lambda").invoke(
        FunctionName=failing_function["name"], InvocationType="Event", Payload=json.dumps({"marker": marker})
    )
    assert out["StatusCode"] == 202
    records = wait_until(lambda: _messages(local_aws, failing_function["destination"]), timeout=40)
    assert records and records[0]["requestContext"]["approximateInvokeCount"] == 3
    assert records[0]["requestPayload"] == {"marker": marker}
