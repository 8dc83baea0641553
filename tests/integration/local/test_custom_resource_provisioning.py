"""The custom resource TrainingCode is created locally as CloudFormation creates it (issue 19): its ServiceToken
function (TrainingCodePublisher) is invoked asynchronously under its own role with the documented Create request,
and provisioning waits for the answer PUT to the request's presigned ResponseURL. SUCCESS: the object exists and
the Data are the resource's attributes; FAILED or no answer: the stack create fails with the reason.

The failing stacks are provisioned in a process of their own each (moto's backends are per process, the session's
``local_aws`` is shared): the same runtime, with the template or the provider changed before it starts."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from support.iam_gate import usage

from loupe_local.standins.cloudformation import RESPONSE_BUCKET, CustomResourceResponses

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
KEY = "code/training/sourcedir.tar.gz"


def test_provisioning_publishes_the_training_code_under_the_publishers_role(local_aws: Any) -> None:
    bucket = local_aws.physical("ArtifactBucket")
    blob = local_aws.client("s3").get_object(Bucket=bucket, Key=KEY)["Body"].read()
    resource = local_aws.resources["TrainingCode"]
    assert not resource.skipped
    assert resource.ref == f"s3://{bucket}/{KEY}"  # Ref = the PhysicalResourceId the handler answered
    assert resource.attrs == {"SourceDirUri": f"s3://{bucket}/{KEY}", "Sha256": hashlib.sha256(blob).hexdigest()}
    session = local_aws.function_session("TrainingCodePublisher")
    assert session is not None, "the session's local AWS checks IAM"
    puts = [r for r in usage(local_aws) if r["action"] == "s3:PutObject" and r["role"] == session.role_name]
    assert [(r["resources"], r["decision"]) for r in puts] == [([f"arn:aws:s3:::{bucket}/{KEY}"], "Allow")]


def _presigned(rt: Any, key: str, expires: int = 60) -> str:
    client = boto3.client(
        "s3",
        endpoint_url=rt.endpoint,
        region_name=rt.region,
        config=Config(signature_version="s3v4"),
        **rt.credentials.as_state(),
    )
    return client.generate_presigned_url(
        "put_object", Params={"Bucket": RESPONSE_BUCKET, "Key": key}, ExpiresIn=expires
    )


def _put(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the local endpoint
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_response_url_takes_one_signed_put_per_request(local_aws: Any) -> None:
    responses = next(s for s in local_aws.standins if isinstance(s, CustomResourceResponses))
    key = f"Probe/{uuid.uuid4()}"
    url = _presigned(local_aws, key)
    assert _put(url, b'{"Status": "SUCCESS"}') == 403  # nobody expects an answer there
    responses.expect(key)
    unsigned = url.split("?", 1)[0]
    assert _put(unsigned, b"forged") == 403  # the gateway refuses what is not presigned with the run's key
    tampered = url.replace(key.split("/")[1], str(uuid.uuid4()))
    assert _put(tampered, b"forged") == 403  # the signature covers the path
    assert _put(url, b'{"Status": "SUCCESS"}') == 200
    assert _put(url, b'{"Status": "FAILED"}') == 403  # one answer per request
    assert responses.wait(key, 5) == b'{"Status": "SUCCESS"}'


# ---------------------------------------------------------------------- stacks that fail to create
_PROBE = r"""
import json, sys
from pathlib import Path
from loupe_local.host import runtime as runtime_mod
from loupe_local.host.custom_resources import CustomResourceFailed

state, scenario = Path(sys.argv[1]), sys.argv[2]
load = runtime_mod.load_sam_app
iam = "off"

def changed(path, parameters):
    app = load(path, parameters)
    resources = app.resources
    if scenario == "no-put-grant":
        # the publisher's role may write elsewhere in the bucket, not under code/training/
        for policy in resources["TrainingCodePublisherRole"]["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                if statement.get("Sid") == "PublishTrainingCode":
                    statement["Resource"] = {"Fn::Sub": "${ArtifactBucket.Arn}/code/elsewhere/*"}
    elif scenario == "no-bucket":
        resources["TrainingCode"]["Properties"]["Bucket"] = "a-bucket-nobody-created"
    elif scenario == "silent":
        # a provider of the test's own that keeps the request and never answers
        code = state / "silent"
        code.mkdir(exist_ok=True)
        (code / "silent.py").write_text(
            "import json, pathlib\n"
            "def lambda_handler(event, context):\n"
            f"    pathlib.Path({str(state / 'request.json')!r}).write_text(json.dumps(event))\n"
        )
        fn = app.functions["TrainingCodePublisher"]
        fn.code_dir, fn.handler = code, "silent.lambda_handler"
        resources["TrainingCode"]["Properties"]["ServiceTimeout"] = 2
    return app

runtime_mod.load_sam_app = changed
if scenario == "no-put-grant":
    iam = "enforce"
rt = runtime_mod.LocalRuntime(state_dir=state, mqtt=False, iam=iam)
try:
    rt.start()
    result = {"created": True}
    rt.stop()
except CustomResourceFailed as exc:
    result = {"created": False, "logical_id": exc.logical_id, "message": str(exc), "reason": exc.reason}
    rt.stop()  # the failed start stopped the local AWS already; a caller's cleanup stopping it again is harmless
    result["stopped"] = rt._server is None
    request = state / "request.json"
    if request.is_file():
        result["request"] = json.loads(request.read_text())
print("RESULT " + json.dumps(result))
"""


def provision(tmp_path: Path, scenario: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path), scenario],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, f"the probe failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def test_in_enforce_a_publisher_without_put_object_on_the_code_fails_the_stack_with_its_error(tmp_path) -> None:
    result = provision(tmp_path, "no-put-grant")
    assert result["created"] is False and result["logical_id"] == "TrainingCode"
    reason = result["reason"]
    # the handler's own answer: "<exception type>: <message>", the message being S3's refusal as boto3 raises it
    assert reason.startswith("Received response status [FAILED] from custom resource. Message returned: ")
    assert (
        "An error occurred (AccessDenied) when calling the PutObject operation: "
        "User: arn:aws:sts::123456789012:assumed-role/"
    ) in reason
    assert "TrainingCodePublisherRole" in reason
    assert "is not authorized to perform: s3:PutObject on resource: arn:aws:s3:::" in reason
    assert f"/{KEY} because no identity-based policy allows the s3:PutObject action" in reason
    assert result["message"].startswith("TrainingCode (Custom::LoupeTrainingCode) CREATE_FAILED: ")


def test_a_provider_answering_failed_fails_the_stack_with_its_reason(tmp_path) -> None:
    result = provision(tmp_path, "no-bucket")
    assert result["created"] is False and result["logical_id"] == "TrainingCode"
    assert result["stopped"] is True  # rolled back: the local AWS no longer serves
    assert result["reason"].startswith(
        "Received response status [FAILED] from custom resource. Message returned: NoSuchBucket: "
        "An error occurred (NoSuchBucket) when calling the PutObject operation: The specified bucket does not exist "
        "(RequestId: "
    )


def test_a_provider_that_never_answers_fails_the_stack_after_its_service_timeout(tmp_path) -> None:
    result = provision(tmp_path, "silent")
    assert result["created"] is False
    request = result["request"]  # what the provider was sent: CloudFormation's Create request
    assert result["reason"] == (
        "CloudFormation did not receive a response from your Custom Resource. Please check your logs for "
        f"requestId [{request['RequestId']}]."
    )
    assert request["RequestType"] == "Create"
    assert request["LogicalResourceId"] == "TrainingCode"
    assert request["ResourceType"] == "Custom::LoupeTrainingCode"
    assert request["StackId"] == "arn:aws:cloudformation:us-east-1:123456789012:stack/loupe/local"
    props = request["ResourceProperties"]
    assert props["ServiceToken"] == request["ServiceToken"]
    assert ":function:" in props["ServiceToken"] and props["Key"] == KEY
    assert request["ResponseURL"].split("?")[0].endswith(f"/{RESPONSE_BUCKET}/TrainingCode/{request['RequestId']}")
    assert "X-Amz-Signature=" in request["ResponseURL"]
