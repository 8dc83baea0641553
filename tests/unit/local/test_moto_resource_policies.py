"""The moto side of resource-based policies (issue 19): ``moto_patches.resource_policy`` reads what AddPermission,
SetQueueAttributes, SetTopicAttributes and PutBucketPolicy stored, and moto's object handlers no longer refuse
what a bucket policy Deny names regardless of its Principal and Condition (the local IAM check evaluates it)."""

from __future__ import annotations

import inspect
import io
import json
import zipfile

import boto3
from moto import mock_aws

from loupe_local.host import moto_patches

ACCOUNT = "123456789012"
TLS_ONLY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::respol-tls", "arn:aws:s3:::respol-tls/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ],
}


def test_moto_checks_bucket_policies_in_the_method_the_patch_replaces() -> None:
    from moto.s3 import responses
    from moto.s3.models import FakeBucket

    assert list(inspect.signature(FakeBucket.get_permission).parameters) == ["self", "action", "resource"]
    assert "bucket.get_permission(" in inspect.getsource(responses)


def test_a_tls_only_bucket_policy_does_not_refuse_tls_object_calls() -> None:
    moto_patches.apply()  # outside mock_aws: leaving it resets moto's configuration that apply() sets
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="respol-tls")
        s3.put_bucket_policy(Bucket="respol-tls", Policy=json.dumps(TLS_ONLY))
        s3.put_object(Bucket="respol-tls", Key="raw/a.jpg", Body=b"x")  # moto answered 403 before the patch
        assert s3.get_object(Bucket="respol-tls", Key="raw/a.jpg")["Body"].read() == b"x"
        assert moto_patches.resource_policy("arn:aws:s3:::respol-tls/raw/a.jpg") == TLS_ONLY


@mock_aws
def test_resource_policy_reads_function_queue_and_topic_policies() -> None:
    lam = boto3.client("lambda", region_name="us-east-1")
    role = boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="respol", AssumeRolePolicyDocument=json.dumps({"Statement": []})
    )["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "")
    arn = lam.create_function(
        FunctionName="respol-fn", Runtime="python3.12", Role=role, Handler="app.h", Code={"ZipFile": buf.getvalue()}
    )["FunctionArn"]
    assert moto_patches.resource_policy(arn) is None  # no permission yet
    rule = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/r"
    lam.add_permission(
        FunctionName="respol-fn",
        StatementId="s",
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
        SourceArn=rule,
    )
    statement = moto_patches.resource_policy(arn)["Statement"][0]  # type: ignore[index]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == rule

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="respol-q")["QueueUrl"]
    queue_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:*"}]}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(queue_policy)})
    assert moto_patches.resource_policy(f"arn:aws:sqs:us-east-1:{ACCOUNT}:respol-q") == queue_policy

    topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="respol-t")["TopicArn"]
    default = moto_patches.resource_policy(topic)
    assert default is not None and default["Statement"][0]["Principal"] == {"AWS": "*"}  # SNS's default policy
    assert moto_patches.resource_policy(f"arn:aws:sqs:us-east-1:{ACCOUNT}:no-such-queue") is None


class _Ctx:
    """The provisioner as a creator sees it (CreatorContext), over moto's in-process mock."""

    done: dict = {}

    def client(self, service: str):
        return boto3.client(service, region_name="us-east-1")

    def physical_name(self, logical_id: str, max_len: int = 63, lower: bool = True) -> str:
        return f"stack-{logical_id}"[:max_len]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:us-east-1:{ACCOUNT}:{resource}"


@mock_aws
def test_a_permission_on_an_autopublished_alias_lands_on_the_alias() -> None:
    """SAM's AutoPublishAlias: Version + Alias, and the event sources' permissions name the alias (its Ref, an ARN);
    the statement belongs to the alias, not to the unqualified function (access-control-resource-based.html)."""
    from loupe_local.host import provision_policies

    ctx = _Ctx()
    role = ctx.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "")
    fn = ctx.client("lambda").create_function(
        FunctionName="respol-aliased",
        Runtime="python3.12",
        Role=role,
        Handler="app.h",
        Code={"ZipFile": buf.getvalue()},
    )["FunctionArn"]
    version = provision_policies.version(ctx, "FnVersion", {"FunctionName": "respol-aliased"})
    alias = provision_policies.alias(
        ctx,
        "FnAliaslive",
        {"FunctionName": "respol-aliased", "Name": "live", "FunctionVersion": version.attrs["Version"]},
    )
    assert alias.ref == f"{fn}:live"
    rule = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/r"
    provision_policies.lambda_permission(
        ctx,
        "FnRulePermission",
        {
            "FunctionName": alias.ref,
            "Action": "lambda:InvokeFunction",
            "Principal": "events.amazonaws.com",
            "SourceArn": rule,
        },
    )
    on_alias = moto_patches.resource_policy(alias.ref)
    assert on_alias is not None
    assert on_alias["Statement"][0]["Condition"]["ArnLike"]["AWS:SourceArn"] == rule
    assert on_alias["Statement"][0]["Resource"] == alias.ref
