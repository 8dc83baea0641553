"""Resource-based policies of template.yaml, created in moto for real, and the Lambda versions and aliases they
may be attached to (issue 19: the local AWS evaluates them, ``loupe_local.iam.resource_policies``).

- ``AWS::Lambda::Permission`` -> Lambda ``AddPermission`` (Principal, SourceArn, SourceAccount; a qualified
  FunctionName puts the statement on that version or alias, as Lambda does: "Resource-based policies apply to a
  single function, version, alias, or layer version", lambda/latest/dg/access-control-resource-based.html).
- ``AWS::SQS::QueuePolicy`` -> each queue's ``Policy`` attribute; ``AWS::SNS::TopicPolicy`` -> each topic's
  ``Policy`` attribute; ``AWS::S3::BucketPolicy`` -> ``PutBucketPolicy``.
- ``AWS::Lambda::Version`` -> ``PublishVersion`` (Ref: the version ARN); ``AWS::Lambda::Alias`` -> ``CreateAlias``
  (Ref: the alias ARN). SAM's ``AutoPublishAlias`` makes both, and puts its event sources' permissions on the alias.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from loupe_local.provisioned import CreatorContext, Provisioned


def _document(props: dict[str, Any]) -> str:
    return json.dumps(props["PolicyDocument"])


def lambda_permission(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    function = str(props["FunctionName"])
    kwargs: dict[str, Any] = {
        "FunctionName": function,
        "StatementId": ctx.physical_name(logical_id, 100, lower=False),
        "Action": props["Action"],
        "Principal": props["Principal"],
    }
    parts = function.split(":")
    if len(parts) == 8:  # arn:aws:lambda:region:account:function:name:qualifier
        kwargs["FunctionName"], kwargs["Qualifier"] = ":".join(parts[:7]), parts[7]
    elif len(parts) == 2:  # name:qualifier
        kwargs["FunctionName"], kwargs["Qualifier"] = parts
    for key in ("SourceArn", "SourceAccount", "EventSourceToken", "PrincipalOrgID", "FunctionUrlAuthType"):
        if props.get(key):
            kwargs[key] = str(props[key])
    ctx.client("lambda").add_permission(**kwargs)
    return Provisioned(logical_id, "AWS::Lambda::Permission", kwargs["StatementId"])


def queue_policy(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    sqs = ctx.client("sqs")
    for url in props["Queues"]:
        sqs.set_queue_attributes(QueueUrl=str(url), Attributes={"Policy": _document(props)})
    return Provisioned(logical_id, "AWS::SQS::QueuePolicy", ctx.physical_name(logical_id))


def topic_policy(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    sns = ctx.client("sns")
    for arn in props["Topics"]:
        sns.set_topic_attributes(TopicArn=str(arn), AttributeName="Policy", AttributeValue=_document(props))
    return Provisioned(logical_id, "AWS::SNS::TopicPolicy", ctx.physical_name(logical_id))


def bucket_policy(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    bucket = str(props["Bucket"])
    ctx.client("s3").put_bucket_policy(Bucket=bucket, Policy=_document(props))
    return Provisioned(logical_id, "AWS::S3::BucketPolicy", bucket)


def version(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    out = ctx.client("lambda").publish_version(FunctionName=str(props["FunctionName"]))
    return Provisioned(logical_id, "AWS::Lambda::Version", out["FunctionArn"], {"Version": out["Version"]})


def alias(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    out = ctx.client("lambda").create_alias(
        FunctionName=str(props["FunctionName"]), Name=str(props["Name"]), FunctionVersion=str(props["FunctionVersion"])
    )
    return Provisioned(logical_id, "AWS::Lambda::Alias", out["AliasArn"], {"AliasArn": out["AliasArn"]})


CREATORS: dict[str, Callable[[CreatorContext, str, dict[str, Any]], Provisioned]] = {
    "AWS::Lambda::Permission": lambda_permission,
    "AWS::SQS::QueuePolicy": queue_policy,
    "AWS::SNS::TopicPolicy": topic_policy,
    "AWS::S3::BucketPolicy": bucket_policy,
    "AWS::Lambda::Version": version,
    "AWS::Lambda::Alias": alias,
}
