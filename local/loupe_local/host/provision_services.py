"""The provisioner's creators of the SageMaker, IoT and CloudWatch resource types (each: boto3 calls against the
local endpoint, the resource's Ref and GetAtt)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from loupe_local.provisioned import CreatorContext, Provisioned
from loupe_local.template import TemplateError


def model_package_group(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("ModelPackageGroupName") or ctx.physical_name(logical_id, 63, lower=False)
    arn = ctx.client("sagemaker").create_model_package_group(
        ModelPackageGroupName=name,
        ModelPackageGroupDescription=props.get("ModelPackageGroupDescription", ""),
    )["ModelPackageGroupArn"]
    return Provisioned(
        logical_id,
        "AWS::SageMaker::ModelPackageGroup",
        arn,
        {"ModelPackageGroupArn": arn, "ModelPackageGroupName": name},
    )


def feature_group(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props["FeatureGroupName"]
    kwargs: dict[str, Any] = {
        k: props[k]
        for k in (
            "RecordIdentifierFeatureName",
            "EventTimeFeatureName",
            "FeatureDefinitions",
            "RoleArn",
            "Description",
        )
        if k in props
    }
    if "OfflineStoreConfig" in props:
        kwargs["OfflineStoreConfig"] = props["OfflineStoreConfig"]
    arn = ctx.client("sagemaker").create_feature_group(FeatureGroupName=name, **kwargs)["FeatureGroupArn"]
    return Provisioned(
        logical_id,
        "AWS::SageMaker::FeatureGroup",
        name,
        {"FeatureGroupArn": arn, "FeatureGroupName": name},
    )


def pipeline(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props["PipelineName"]
    definition = props["PipelineDefinition"]
    body = definition.get("PipelineDefinitionBody")
    if body is None:
        raise TemplateError(f"{logical_id}: only PipelineDefinitionBody is supported locally")
    ctx.client("sagemaker").create_pipeline(
        PipelineName=name,
        PipelineDefinition=body if isinstance(body, str) else json.dumps(body),
        RoleArn=props["RoleArn"],
        PipelineDescription=props.get("PipelineDescription", ""),
    )
    return Provisioned(logical_id, "AWS::SageMaker::Pipeline", name, {"PipelineName": name})


def thing_group(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("ThingGroupName") or ctx.physical_name(logical_id, 128, lower=False)
    iot = ctx.client("iot")
    # CreateThingGroup answers an existing group of the same properties with that group, but CloudFormation's
    # create handler must not adopt a resource it did not create: it fails with the resource handler contract's
    # AlreadyExists (CloudFormation CLI, "Resource type handler contract": a create whose primary identifier exists
    # fails with HandlerErrorCode AlreadyExists). A stack meant for a shared group takes CreateThingGroup=false.
    try:
        iot.describe_thing_group(thingGroupName=name)
    except iot.exceptions.ResourceNotFoundException:
        pass
    else:
        raise TemplateError(
            f"{logical_id}: Resource of type 'AWS::IoT::ThingGroup' with identifier '{name}' already exists."
            " (HandlerErrorCode: AlreadyExists)"
        )
    out = iot.create_thing_group(
        thingGroupName=name, thingGroupProperties=_lower_keys(props.get("ThingGroupProperties", {}))
    )
    return Provisioned(
        logical_id, "AWS::IoT::ThingGroup", name, {"Arn": out["thingGroupArn"], "Id": out["thingGroupId"]}
    )


def iot_policy(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("PolicyName") or ctx.physical_name(logical_id, 128, lower=False)
    document = props["PolicyDocument"]
    out = ctx.client("iot").create_policy(
        policyName=name, policyDocument=document if isinstance(document, str) else json.dumps(document)
    )
    return Provisioned(logical_id, "AWS::IoT::Policy", name, {"Arn": out["policyArn"], "Id": name})


def role_alias(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    """A role alias in moto's IoT, which the local credentials provider (``standins/credentials_provider.py``)
    reads: the role it names and ``CredentialDurationSeconds`` (900-43200, default 3600: IoT API Reference,
    CreateRoleAlias). Ref is the alias name, ``RoleAliasArn`` its ARN (CloudFormation, AWS::IoT::RoleAlias)."""
    name = props.get("RoleAlias") or ctx.physical_name(logical_id, 128, lower=False)
    duration = int(props.get("CredentialDurationSeconds", 3600))
    if not 900 <= duration <= 43200:
        raise TemplateError(f"{logical_id}: CredentialDurationSeconds {duration} is outside 900-43200")
    out = ctx.client("iot").create_role_alias(
        roleAlias=name, roleArn=str(props["RoleArn"]), credentialDurationSeconds=duration
    )
    return Provisioned(logical_id, "AWS::IoT::RoleAlias", name, {"RoleAliasArn": out["roleAliasArn"]})


def topic_rule(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("RuleName") or re.sub(r"[^A-Za-z0-9_]", "_", ctx.physical_name(logical_id, 128, lower=False))
    payload = props["TopicRulePayload"]
    ctx.client("iot").create_topic_rule(
        ruleName=name,
        topicRulePayload={
            "sql": payload["Sql"],
            "description": payload.get("Description", ""),
            "actions": [_lower_keys(a) for a in payload.get("Actions", [])],
            "ruleDisabled": bool(payload.get("RuleDisabled", False)),
            "awsIotSqlVersion": payload.get("AwsIotSqlVersion", "2016-03-23"),
            **({"errorAction": _lower_keys(payload["ErrorAction"])} if "ErrorAction" in payload else {}),
        },
    )
    return Provisioned(logical_id, "AWS::IoT::TopicRule", name, {"Arn": ctx.arn("iot", f"rule/{name}")})


def alarm(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("AlarmName") or ctx.physical_name(logical_id, 255, lower=False)
    kwargs = {
        k: props[k]
        for k in (
            "AlarmDescription",
            "Namespace",
            "MetricName",
            "Statistic",
            "Period",
            "EvaluationPeriods",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
            "AlarmActions",
            "Dimensions",
        )
        if k in props
    }
    for k in ("Period", "EvaluationPeriods"):
        if k in kwargs:
            kwargs[k] = int(kwargs[k])
    if "Threshold" in kwargs:
        kwargs["Threshold"] = float(kwargs["Threshold"])
    ctx.client("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
    return Provisioned(logical_id, "AWS::CloudWatch::Alarm", name, {"Arn": ctx.arn("cloudwatch", f"alarm:{name}")})


def dashboard(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("DashboardName") or ctx.physical_name(logical_id, 255, lower=False)
    body = props["DashboardBody"]
    ctx.client("cloudwatch").put_dashboard(
        DashboardName=name, DashboardBody=body if isinstance(body, str) else json.dumps(body)
    )
    return Provisioned(logical_id, "AWS::CloudWatch::Dashboard", name, {})


CREATORS: dict[str, Callable[[CreatorContext, str, dict[str, Any]], Provisioned]] = {
    "AWS::SageMaker::ModelPackageGroup": model_package_group,
    "AWS::SageMaker::FeatureGroup": feature_group,
    "AWS::SageMaker::Pipeline": pipeline,
    "AWS::IoT::ThingGroup": thing_group,
    "AWS::IoT::TopicRule": topic_rule,
    "AWS::IoT::Policy": iot_policy,
    "AWS::IoT::RoleAlias": role_alias,
    "AWS::CloudWatch::Alarm": alarm,
    "AWS::CloudWatch::Dashboard": dashboard,
}


def _lower_keys(value: Any) -> Any:
    """CloudFormation's TopicRule action keys (Lambda, FunctionArn) -> the API's (lambda, functionArn)."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value
