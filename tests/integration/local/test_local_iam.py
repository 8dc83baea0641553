"""Each principal acts locally under its own role, and its calls are checked against that role (issue 19).

The shared local AWS is switched to ``audit`` (then ``enforce``) for each test and back to the mode it had after it. A
real handler (EdgeHealthFunction) runs with its role's session as Lambda gives it; its calls are recorded as
allowed under that role. The same session calling outside its grant is recorded as a would-deny in ``audit`` (and
answered), refused with the protocol's AccessDenied in ``enforce``; the report lists both.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError
from support.iam_gate import usage, usage_lines
from support.lambdas import function_with_on_failure_queue
from support.waiting import wait_until

from loupe_local.iam.audit import ROLES_FILE, USAGE_FILE, usage_log_lines
from loupe_local.iam.principals import RoleSession
from loupe_local.iam.report import build, print_report

# these tests provoke calls outside a role's grant on purpose: the session's zero-deny gate leaves them out
pytestmark = [pytest.mark.integration, pytest.mark.iam_would_deny]

FUNCTION = "EdgeHealthFunction"


@pytest.fixture
def audited(local_aws: Any) -> Any:
    before = local_aws.iam_mode
    local_aws.set_iam("audit")
    try:
        yield local_aws
    finally:
        local_aws.set_iam(before)


def as_session(rt: Any, session: RoleSession, service: str) -> Any:
    return boto3.Session(region_name=rt.region, **session.boto_kwargs()).client(
        service, endpoint_url=rt.endpoint, config=Config(retries={"max_attempts": 1})
    )


def health_of(thing: str) -> dict[str, Any]:
    return {
        "thing": thing,
        "fps": 5.0,
        "uncertain_share": 0.1,
        "mean_top_confidence": 0.9,
        "topic": f"loupe/{thing}/health",
        "source_thing": thing,
    }


def role_name(rt: Any) -> str:
    return rt.arn(f"{FUNCTION}Role").rsplit("/", 1)[-1]


def test_a_handler_runs_under_its_own_role_and_its_calls_are_recorded_as_allowed(audited: Any) -> None:
    thing = f"loupe-device-iam-{uuid.uuid4().hex[:6]}"  # not in the fleet: the handler looks it up, then keeps it aside
    # a warm handler made its clients with the run's key while IAM was off: after the switch it runs as its role
    audited.set_iam("off")
    audited.invoke(FUNCTION, health_of(thing))
    audited.set_iam("audit")
    seen = usage_lines(audited.state_dir)
    out = audited.invoke(FUNCTION, health_of(thing))
    assert "is not in thing group" in out["rejected"]
    records = usage(audited, seen)
    session = audited.function_session(FUNCTION)
    assert session is not None and session.role_arn == audited.arn(f"{FUNCTION}Role")
    mine = [r for r in records if r["principal"] == session.arn]
    assert {(r["action"], r["decision"]) for r in mine} >= {
        ("iot:ListThingGroupsForThing", "Allow"),
        ("s3:PutObject", "Allow"),
    }, records
    (lookup,) = [r for r in mine if r["action"] == "iot:ListThingGroupsForThing"]
    assert lookup["resources"] == [f"arn:aws:iot:{audited.region}:123456789012:thing/{thing}"]
    assert lookup["role"] == role_name(audited)
    assert session.arn.startswith("arn:aws:sts::123456789012:assumed-role/")
    # the run's key is back in the process once the handler returned: the tests' and runtime's clients are admin
    assert os.environ["AWS_ACCESS_KEY_ID"] == audited.credentials.access_key_id
    assert not os.environ.get("AWS_SESSION_TOKEN")
    identity = boto3.client("sts", endpoint_url=audited.endpoint).get_caller_identity()["Arn"]
    assert ":assumed-role/" not in identity


def test_a_call_outside_the_role_is_a_would_deny_in_audit_and_refused_in_enforce(audited: Any) -> None:
    session = audited.function_session(FUNCTION)
    bucket = audited.physical("RawBucket")
    table = audited.physical("DeploymentsTable")
    s3 = as_session(audited, session, "s3")
    dynamodb = as_session(audited, session, "dynamodb")
    seen = usage_lines(audited.state_dir)
    # audit: recorded, still answered
    s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    dynamodb.scan(TableName=table, Limit=1)
    denied = [r for r in usage(audited, seen) if r["decision"] == "ImplicitDeny"]
    assert {(r["action"], tuple(r["resources"])) for r in denied} == {
        ("s3:ListBucket", (f"arn:aws:s3:::{bucket}",)),
        ("dynamodb:Scan", (f"arn:aws:dynamodb:{audited.region}:123456789012:table/{table}",)),
    }
    assert all(r["principal"] == session.arn for r in denied)
    # enforce: the same calls get the protocol's AccessDenied with AWS's message; allowed calls still work
    audited.set_iam("enforce")
    with pytest.raises(ClientError) as s3_refused:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    assert s3_refused.value.response["Error"]["Code"] == "AccessDenied"
    assert s3_refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3_refused.value.response["Error"]["Message"] == (
        f"User: {session.arn} is not authorized to perform: s3:ListBucket on resource: arn:aws:s3:::{bucket} "
        "because no identity-based policy allows the s3:ListBucket action"
    )
    with pytest.raises(ClientError) as ddb_refused:
        dynamodb.scan(TableName=table, Limit=1)
    assert ddb_refused.value.response["Error"]["Code"] == "AccessDeniedException"
    out = audited.invoke(FUNCTION, health_of(f"loupe-device-iam-{uuid.uuid4().hex[:6]}"))
    assert "is not in thing group" in out["rejected"]  # its own calls are within its grant: not refused


def test_a_state_machines_service_calls_are_made_as_its_role(audited: Any) -> None:
    """The ASL engine signs a state's calls with the state machine's role session (its RoleArn)."""
    sfn = audited.client("stepfunctions")
    role = audited.arn("LabelingStateMachineRole")
    prefix = f"loupe-iam-{uuid.uuid4().hex[:8]}"
    definition = {
        "StartAt": "List",
        "States": {
            "List": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sqs:listQueues",
                "Parameters": {"QueueNamePrefix": prefix},
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(name=prefix, definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
    seen = usage_lines(audited.state_dir)

    def run() -> str:
        execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
        assert wait_until(lambda: sfn.describe_execution(executionArn=execution)["status"] != "RUNNING", timeout=60)
        return sfn.describe_execution(executionArn=execution)["status"]

    assert run() == "SUCCEEDED"  # audit: recorded, answered
    (record,) = [r for r in usage(audited, seen) if r["action"] == "sqs:ListQueues"]
    assert record["principal"] == audited.role_session(role).arn
    assert record["role"] == role.rsplit("/", 1)[-1]
    assert record["decision"] == "ImplicitDeny"  # the labeling workflow's role is not granted ListQueues
    audited.set_iam("enforce")
    assert run() == "FAILED"


def test_an_on_failure_destination_is_sent_to_as_the_functions_role(audited: Any, tmp_path: Path) -> None:
    """Lambda sends a failed asynchronous invocation's record with the function's execution role."""
    failing = "def lambda_handler(event, context):\n    raise RuntimeError('down')\n"
    role = audited.arn("FeedbackFunctionRole")  # a stack role, whose grant does not name this test's queue
    fn = function_with_on_failure_queue(audited, tmp_path, failing, "itest-iam-failing", role=role)
    seen = usage_lines(audited.state_dir)
    audited.router.invoke_async(fn["arn"], {"marker": uuid.uuid4().hex})
    sqs = audited.client("sqs")
    assert wait_until(
        lambda: sqs.receive_message(QueueUrl=fn["destination"], WaitTimeSeconds=1).get("Messages"), timeout=40
    )
    sent = [r for r in usage(audited, seen) if r["action"] == "sqs:SendMessage"]
    assert [(r["principal"], r["decision"]) for r in sent] == [(audited.role_session(role).arn, "ImplicitDeny")]
    # the stack's FeedbackFunctionRole may send only to the stack's own failure queue, not this test's queue
    assert sent[0]["resources"] == [f"arn:aws:sqs:{audited.region}:123456789012:{fn['name']}-onfailure"]


def test_a_stand_in_operation_is_checked_before_the_stand_in_answers(audited: Any) -> None:
    """The Ground Truth stand-in answers in the gateway, not in moto: its operations are authorized first."""
    session = audited.function_session(FUNCTION)
    sagemaker = as_session(audited, session, "sagemaker")
    job = f"loupe-iam-{uuid.uuid4().hex[:8]}"
    seen = usage_lines(audited.state_dir)
    with pytest.raises(ClientError) as audit_answer:
        sagemaker.describe_labeling_job(LabelingJobName=job)
    assert audit_answer.value.response["Error"]["Code"] != "AccessDeniedException"  # audit: the stand-in answered
    (record,) = [r for r in usage(audited, seen) if r["action"] == "sagemaker:DescribeLabelingJob"]
    assert record["decision"] == "ImplicitDeny"
    assert record["resources"] == [f"arn:aws:sagemaker:{audited.region}:123456789012:labeling-job/{job}"]
    audited.set_iam("enforce")
    with pytest.raises(ClientError) as refused:
        sagemaker.describe_labeling_job(LabelingJobName=job)
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "sagemaker:DescribeLabelingJob" in refused.value.response["Error"]["Message"]


def test_the_report_lists_used_denied_and_unused_grants_per_role(audited: Any, tmp_path: Path) -> None:
    state = Path(audited.state_dir)
    before = usage_lines(audited.state_dir)
    session = audited.function_session(FUNCTION)
    audited.invoke(FUNCTION, health_of(f"loupe-device-iam-{uuid.uuid4().hex[:6]}"))
    audited.set_iam("enforce")
    with pytest.raises(ClientError):
        as_session(audited, session, "s3").get_object(Bucket=audited.physical("RawBucket"), Key="raw/none.jpg")
    # the report of this test's calls only: the session's log also holds every earlier test's (in a full run the
    # deployment tests' health messages have used this role's PutItem already)
    mine_only = tmp_path / "state"
    mine_only.mkdir()
    (mine_only / ROLES_FILE).write_text((state / ROLES_FILE).read_text())
    lines = usage_log_lines(state / USAGE_FILE)[before:]
    (mine_only / USAGE_FILE).write_text("".join(line + "\n" for line in lines))
    reports = {r.role: r for r in build(mine_only)}
    mine = reports[role_name(audited)]
    assert {"iot:ListThingGroupsForThing", "s3:PutObject"} <= set(mine.used)
    assert "s3:GetObject" in mine.denied and mine.would_deny >= 1
    assert any("dynamodb:PutItem" in line for line in mine.unused), mine.unused  # granted, not used by this event
    text = io.StringIO()
    assert print_report(mine_only, text) >= 1
    assert f"\n{role_name(audited)}\n" in text.getvalue()
    assert "DENIED   s3:GetObject" in text.getvalue()


def test_iam_report_strict_exits_non_zero_on_a_would_deny(audited: Any, tmp_path: Path) -> None:
    from loupe_local.cli import main

    session = audited.function_session(FUNCTION)
    as_session(audited, session, "dynamodb").scan(TableName=audited.physical("DeploymentsTable"), Limit=1)
    assert main(["local", "iam-report", "--state", str(audited.state_dir), "--strict"]) == 1
    assert main(["local", "iam-report", "--state", str(audited.state_dir)]) == 0
    (tmp_path / "iam-usage.jsonl").write_text(
        json.dumps({"role": "r", "principal": "p", "action": "s3:GetObject", "resources": ["*"], "decision": "Allow"})
        + "\n"
    )
    assert main(["local", "iam-report", "--state", str(tmp_path), "--strict"]) == 0


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_a_url_presigned_by_a_role_session_carries_its_token_and_is_checked(
    audited: Any, signature_version: str
) -> None:
    session = audited.function_session(FUNCTION)
    s3 = boto3.Session(region_name=audited.region, **session.boto_kwargs()).client(
        "s3", endpoint_url=audited.endpoint, config=Config(signature_version=signature_version)
    )
    bucket = audited.physical("RawBucket")
    key = f"quarantine/device-messages/health/loupe-device-iam/{uuid.uuid4().hex}.json"
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    assert "security-token" in url.lower()
    seen = usage_lines(audited.state_dir)
    http = urllib3.PoolManager()
    answer = http.request("PUT", url, body=b"{}", timeout=15)
    assert answer.status == 200, answer.data
    (record,) = [r for r in usage(audited, seen) if r["principal"] == session.arn]
    assert (record["action"], record["resources"], record["decision"]) == (
        "s3:PutObject",
        [f"arn:aws:s3:::{bucket}/{key}"],
        "Allow",
    )
    parts = urlsplit(url)
    query = [(k, "forged" if k.lower() == "x-amz-security-token" else v) for k, v in parse_qsl(parts.query)]
    forged = urlunsplit(parts._replace(query=urlencode(query)))
    assert "forged" in forged
    assert http.request("PUT", forged, body=b"{}", timeout=15).status in (400, 403)


def test_a_session_key_needs_its_token_and_expires(audited: Any) -> None:
    session = audited.function_session(FUNCTION)
    table = audited.physical("DeploymentsTable")
    no_token = boto3.Session(
        aws_access_key_id=session.access_key_id,
        aws_secret_access_key=session.secret_access_key,
        region_name=audited.region,
    ).client("dynamodb", endpoint_url=audited.endpoint, config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as refused:
        no_token.describe_table(TableName=table)
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    wrong = RoleSession(**{**session.__dict__, "session_token": "forged"})
    with pytest.raises(ClientError) as forged:
        as_session(audited, wrong, "s3").head_bucket(Bucket=audited.physical("RawBucket"))
    assert forged.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    old = RoleSession(
        role_name=session.role_name,
        role_arn=session.role_arn,
        session_name="expired",
        access_key_id="ASIA" + secrets.token_hex(8).upper(),
        secret_access_key=secrets.token_urlsafe(30),
        session_token=secrets.token_urlsafe(40),
        expiration=time.time() - 1,
    )
    audited.sessions.add(old)
    with pytest.raises(ClientError) as expired:
        as_session(audited, old, "dynamodb").describe_table(TableName=table)
    assert expired.value.response["Error"]["Code"] == "ExpiredToken"
