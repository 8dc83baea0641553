"""The provisioner's creators of the core resource types: S3, DynamoDB, SNS, SQS, IAM, Lambda, CloudWatch Logs,
Step Functions and EventBridge rules (each: boto3 calls against the local endpoint, the resource's Ref and GetAtt)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from typing import Any

from loupe_local.host.provision_checks import check_task_targets
from loupe_local.provisioned import CreatorContext, Provisioned
from loupe_local.template import TemplateError


def bucket(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("BucketName") or ctx.physical_name(logical_id)
    s3 = ctx.client("s3")
    s3.create_bucket(Bucket=name)
    if "BucketEncryption" in props:
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                    for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                ]
            },
        )
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=_bools(props["PublicAccessBlockConfiguration"])
        )
    if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    if props.get("CorsConfiguration"):
        s3.put_bucket_cors(Bucket=name, CORSConfiguration=_cors(props["CorsConfiguration"]))
    return Provisioned(
        logical_id,
        "AWS::S3::Bucket",
        name,
        {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"},
    )


def table(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("TableName") or ctx.physical_name(logical_id, 255, lower=False)
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("StreamSpecification"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if "DeletionProtectionEnabled" in props:  # DeleteTable is then refused, locally as in AWS
        kwargs["DeletionProtectionEnabled"] = _boolean(props["DeletionProtectionEnabled"])
    ddb = ctx.client("dynamodb")
    desc = ddb.create_table(**kwargs)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    attrs = {"Arn": desc["TableArn"]}
    if desc.get("LatestStreamArn"):
        attrs["StreamArn"] = desc["LatestStreamArn"]
    return Provisioned(logical_id, "AWS::DynamoDB::Table", name, attrs)


def topic(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("TopicName") or ctx.physical_name(logical_id, 256, lower=False)
    arn = ctx.client("sns").create_topic(Name=name)["TopicArn"]
    return Provisioned(logical_id, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": name})


def queue(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("QueueName") or ctx.physical_name(logical_id, 80, lower=False)
    attributes = {
        k: str(props[k]).lower() if isinstance(props[k], bool) else str(props[k])
        for k in ("MessageRetentionPeriod", "VisibilityTimeout", "SqsManagedSseEnabled")
        if k in props
    }
    sqs = ctx.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Provisioned(logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url})


def role(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("RoleName") or ctx.physical_name(logical_id, 64, lower=False)
    iam = ctx.client("iam")
    role = iam.create_role(
        RoleName=name, AssumeRolePolicyDocument=json.dumps(props.get("AssumeRolePolicyDocument", {}))
    )["Role"]
    for policy in props.get("Policies", []):
        document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    return Provisioned(logical_id, "AWS::IAM::Role", name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})


def function(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("FunctionName") or ctx.physical_name(logical_id, 64, lower=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README", "code runs in-process from the repository; see loupe_local.host.invoker")
    env = props.get("Environment", {}).get("Variables", {})
    fn = ctx.client("lambda").create_function(
        FunctionName=name,
        Runtime=props.get("Runtime", "python3.12"),
        Role=props["Role"],
        Handler=props.get("Handler", "app.lambda_handler"),
        Code={"ZipFile": buf.getvalue()},
        Timeout=int(props.get("Timeout", 3)),
        MemorySize=int(props.get("MemorySize", 128)),
        Environment={"Variables": {k: str(v) for k, v in env.items()}},
    )
    if props.get("ReservedConcurrentExecutions") is not None:  # CloudFormation sets it with PutFunctionConcurrency
        ctx.client("lambda").put_function_concurrency(
            FunctionName=name, ReservedConcurrentExecutions=int(props["ReservedConcurrentExecutions"])
        )
    return Provisioned(logical_id, "AWS::Lambda::Function", name, {"Arn": fn["FunctionArn"]})


def layer(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("LayerName") or ctx.physical_name(logical_id, 64, lower=False)
    arn = ctx.arn("lambda", f"layer:{name}:1")
    return Provisioned(
        logical_id,
        "AWS::Lambda::LayerVersion",
        arn,
        {},
        skipped="layer code is put on sys.path in-process",
    )


def log_group(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("LogGroupName") or ctx.physical_name(logical_id, 512, lower=False)
    logs = ctx.client("logs")
    logs.create_log_group(logGroupName=name)
    if props.get("RetentionInDays"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    return Provisioned(logical_id, "AWS::Logs::LogGroup", name, {"Arn": ctx.arn("logs", f"log-group:{name}:*")})


def event_invoke_config(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    """Stored in moto's Lambda; the router's asynchronous invocations read it (retries, on-failure)."""
    kwargs: dict[str, Any] = {"FunctionName": props["FunctionName"]}
    for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
        if key in props:
            kwargs[key] = int(props[key]) if key != "DestinationConfig" else props[key]
    ctx.client("lambda").put_function_event_invoke_config(**kwargs)
    return Provisioned(logical_id, "AWS::Lambda::EventInvokeConfig", f"{props['FunctionName']}|$LATEST")


def state_machine(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("StateMachineName") or ctx.physical_name(logical_id, 80, lower=False)
    definition = props.get("DefinitionString")
    if definition is None:
        definition = json.dumps(props["Definition"])
    for key, value in (props.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + key + "}", str(value))
    leftover = re.findall(r"\$\{([A-Za-z0-9_]+)\}", definition)
    if leftover:
        raise TemplateError(f"{logical_id}: DefinitionSubstitutions lacks {sorted(set(leftover))}")
    check_task_targets(logical_id, json.loads(definition), ctx.done)
    arn = ctx.client("stepfunctions").create_state_machine(name=name, definition=definition, roleArn=props["RoleArn"])[
        "stateMachineArn"
    ]
    return Provisioned(logical_id, "AWS::StepFunctions::StateMachine", arn, {"Arn": arn, "Name": name})


def rule(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("Name") or ctx.physical_name(logical_id, 64, lower=False)
    events = ctx.client("events")
    kwargs: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
    if "EventPattern" in props:
        kwargs["EventPattern"] = json.dumps(props["EventPattern"])
    if "ScheduleExpression" in props:
        kwargs["ScheduleExpression"] = props["ScheduleExpression"]
    arn = events.put_rule(**kwargs)["RuleArn"]
    targets = []
    for target in props.get("Targets", []):
        t = {
            k: v
            for k, v in target.items()
            if k
            in (
                "Id",
                "Arn",
                "Input",
                "InputPath",
                "InputTransformer",
                "RoleArn",
                "DeadLetterConfig",
                "RetryPolicy",
            )
        }
        if isinstance(t.get("Input"), dict):
            t["Input"] = json.dumps(t["Input"])
        targets.append(t)
    if targets:
        events.put_targets(Rule=name, Targets=targets)
    return Provisioned(logical_id, "AWS::Events::Rule", name, {"Arn": arn})


CREATORS: dict[str, Callable[[CreatorContext, str, dict[str, Any]], Provisioned]] = {
    "AWS::S3::Bucket": bucket,
    "AWS::DynamoDB::Table": table,
    "AWS::SNS::Topic": topic,
    "AWS::SQS::Queue": queue,
    "AWS::IAM::Role": role,
    "AWS::Lambda::Function": function,
    "AWS::Lambda::LayerVersion": layer,
    "AWS::Lambda::EventInvokeConfig": event_invoke_config,
    "AWS::Logs::LogGroup": log_group,
    "AWS::StepFunctions::StateMachine": state_machine,
    "AWS::Events::Rule": rule,
}


def _boolean(value: Any) -> bool:
    """A CloudFormation Boolean property: true/false as YAML booleans or as the strings a parameter resolves to."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise TemplateError(f"{value!r} is not a Boolean (true or false)")


def _cors(config: dict[str, Any]) -> dict[str, Any]:
    """AWS::S3::Bucket CorsConfiguration -> PutBucketCors's CORSConfiguration (CloudFormation renames members)."""
    renamed = {"ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds", "Id": "ID"}
    rules = [{renamed.get(k, k): v for k, v in rule.items()} for rule in config.get("CorsRules", [])]
    for rule in rules:
        if "MaxAgeSeconds" in rule:
            rule["MaxAgeSeconds"] = int(rule["MaxAgeSeconds"])
    return {"CORSRules": rules}


def _bools(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, bool) else str(v).lower() == "true") for k, v in d.items()}
