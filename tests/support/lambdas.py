"""Throwaway Lambda functions in the local AWS, registered with the real in-process invoker."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

from loupe_local.host.invoker import RegisteredFunction


def queue(local_aws: Any, name: str) -> tuple[str, str]:
    """(url, arn) of a new SQS queue."""
    sqs = local_aws.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def let_eventbridge_deliver(
    local_aws: Any, rule_arn: str, function: str | None = None, queue: str | None = None
) -> None:
    """The resource policies EventBridge needs to deliver ``rule_arn``'s events to a test's own ``function`` (a
    Lambda permission) and ``queue`` (a queue policy, by ARN): AWS refuses the delivery without them (EventBridge
    user guide, "Using resource-based policies for Amazon EventBridge"), and so does the local AWS."""
    if function is not None:
        local_aws.client("lambda").add_permission(
            FunctionName=function,
            StatementId=f"events-{rule_arn.rsplit('/', 1)[-1]}"[:100],
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            SourceArn=rule_arn,
        )
    if queue is not None:
        sqs = local_aws.client("sqs")
        url = sqs.get_queue_url(QueueName=queue.rsplit(":", 1)[-1])["QueueUrl"]
        statement = {
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
        }
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})


def role_of_its_own(local_aws: Any, name: str, service: str, actions: list[str], resource: str) -> str:
    """The ARN of a new role that ``service`` (``lambda``, ``iot``) may assume, granted ``actions`` on ``resource``
    only: a test's own resource never borrows a stack role (whose grant names the stack's resources only)."""
    iam = local_aws.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": f"{service}.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    arn = iam.create_role(RoleName=name[:64], AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    grant = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}
    iam.put_role_policy(RoleName=name[:64], PolicyName="own", PolicyDocument=json.dumps(grant))
    return str(arn)


def function_with_on_failure_queue(
    local_aws: Any,
    code_dir: Path,
    source: str,
    prefix: str,
    max_event_age: int | None = None,
    role: str | None = None,
) -> dict[str, str]:
    """A function running ``source`` (its ``app.lambda_handler``) with 2 async retries and an on-failure
    destination queue of its own: ``{"name", "arn", "destination"}`` (the queue's URL). Its execution role is
    ``role``, else one of its own allowed to send to that queue (Lambda sends the record with it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    (code_dir / "app.py").write_text(source)
    destination, destination_arn = queue(local_aws, f"{name}-onfailure")
    if role is None:
        role = role_of_its_own(local_aws, f"{name}-role", "lambda", ["sqs:SendMessage"], destination_arn)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", source)
    lam = local_aws.client("lambda")
    fn = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="app.lambda_handler",
        Code={"ZipFile": buf.getvalue()},
    )
    config: dict[str, Any] = {
        "FunctionName": name,
        "MaximumRetryAttempts": 2,
        "DestinationConfig": {"OnFailure": {"Destination": destination_arn}},
    }
    if max_event_age is not None:
        config["MaximumEventAgeInSeconds"] = max_event_age
    lam.put_function_event_invoke_config(**config)
    local_aws.invoker.register(
        RegisteredFunction(
            logical_id=name,
            name=name,
            arn=fn["FunctionArn"],
            code_dir=code_dir,
            handler="app.lambda_handler",
            environment={},
            timeout=10,
        )
    )
    return {"name": name, "arn": fn["FunctionArn"], "destination": destination}
