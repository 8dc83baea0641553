"""Creates, in the local AWS, every resource of template.yaml that moto supports.

The list of resources comes from the SAM-transformed template itself (in dependency order); this module only
knows how to create each resource *type* with boto3 calls against the local endpoint. Types moto cannot hold are
recorded as skipped, with the reason, in ``.loupe/local.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loupe_local.template import ACCOUNT_ID, Resolver, SamApp, TemplateError, creation_order

log = logging.getLogger("loupe_local.provision")


@dataclass
class Provisioned:
    logical_id: str
    type: str
    ref: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""

    def as_json(self) -> dict[str, Any]:
        out = {
            "type": self.type,
            "physical": self.ref,
            **({"arn": self.attrs["Arn"]} if "Arn" in self.attrs else {}),
        }
        if self.skipped:
            out["skipped"] = self.skipped
        return out


# Types with nothing to create locally, and why.
SKIPPED_TYPES = {
    "AWS::Lambda::Permission": "resource policies are not enforced locally",
    "AWS::SNS::Subscription": "no e-mail delivery locally",
    "AWS::SQS::QueuePolicy": "resource policies are not enforced locally",
    "AWS::S3::BucketPolicy": "bucket policies are not enforced locally (TLS-only deny)",
    "AWS::IoT::RoleAlias": "no credential provider locally",
}


class Provisioner:
    def __init__(self, app: SamApp, session: Any, stack_name: str, region: str, parameters: dict[str, Any]):
        self.app = app
        self.session = session
        self.stack_name = stack_name
        self.region = region
        self.done: dict[str, Provisioned] = {}
        self.resolver = Resolver(app.transformed, parameters, stack_name, region, self._ref, self._get_att)
        self._clients: dict[str, Any] = {}
        self.creators: dict[str, Callable[[str, dict[str, Any]], Provisioned]] = {
            "AWS::S3::Bucket": self._bucket,
            "AWS::DynamoDB::Table": self._table,
            "AWS::SNS::Topic": self._topic,
            "AWS::SQS::Queue": self._queue,
            "AWS::IAM::Role": self._role,
            "AWS::Lambda::Function": self._function,
            "AWS::Lambda::LayerVersion": self._layer,
            "AWS::Lambda::EventInvokeConfig": self._event_invoke_config,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::StepFunctions::StateMachine": self._state_machine,
            "AWS::Events::Rule": self._rule,
            "AWS::SageMaker::ModelPackageGroup": self._model_package_group,
            "AWS::SageMaker::FeatureGroup": self._feature_group,
            "AWS::SageMaker::Pipeline": self._pipeline,
            "AWS::IoT::ThingGroup": self._thing_group,
            "AWS::IoT::TopicRule": self._topic_rule,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::CloudWatch::Dashboard": self._dashboard,
        }

    # ------------------------------------------------------------------ plumbing
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def _ref(self, logical_id: str) -> Any:
        if logical_id not in self.done:
            raise TemplateError(f"Ref to {logical_id}, which the template does not declare (or is not created yet)")
        return self.done[logical_id].ref

    def _get_att(self, logical_id: str, attr: str) -> Any:
        res = self.done.get(logical_id)
        if res is None:
            raise TemplateError(f"GetAtt {logical_id}.{attr}: the template does not declare {logical_id}")
        if attr not in res.attrs:
            raise TemplateError(f"GetAtt {logical_id}.{attr}: attribute not available locally")
        return res.attrs[attr]

    def physical_name(self, logical_id: str, max_len: int = 63, lower: bool = True) -> str:
        suffix = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:8]
        base = f"{self.stack_name}-{logical_id}"
        base = base.lower() if lower else base
        return f"{base[: max_len - 9]}-{suffix}"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    # ------------------------------------------------------------------ main
    def provision(self) -> dict[str, Provisioned]:
        resources = self.app.resources
        self.check_parameters()
        self._check_references(resources)
        for logical_id in creation_order(resources):
            res = resources[logical_id]
            if "Condition" in res and not self.resolver.condition(res["Condition"]):
                self.done[logical_id] = Provisioned(logical_id, res["Type"], None, skipped="condition is false")
                continue
            rtype = res["Type"]
            if rtype in SKIPPED_TYPES:
                self.done[logical_id] = Provisioned(
                    logical_id, rtype, self.physical_name(logical_id), skipped=SKIPPED_TYPES[rtype]
                )
                continue
            creator = self.creators.get(rtype)
            if creator is None:
                self.done[logical_id] = Provisioned(
                    logical_id,
                    rtype,
                    self.physical_name(logical_id),
                    skipped="moto does not support this type",
                )
                log.debug("skipped %s (%s): not supported locally", logical_id, rtype)
                continue
            props = self.resolver.resolve(res.get("Properties", {}))
            result = creator(logical_id, props)
            result.properties = props
            self.done[logical_id] = result
            log.debug("created %s %s", rtype, result.ref)
        return self.done

    def check_parameters(self) -> None:
        """What CloudFormation validates before it creates anything (so a failure creates nothing): each String
        parameter's AllowedPattern (a whole-value match), then the template's Rules, whose failed assertion's
        AssertDescription is the deploy's ValidationError (AWSCloudFormation/latest/UserGuide/rules-section-structure).
        """
        template = self.app.transformed
        for name, spec in template.get("Parameters", {}).items():
            pattern = spec.get("AllowedPattern")
            value = self.resolver.parameters.get(name)
            if pattern and spec.get("Type") == "String" and not re.fullmatch(pattern, str(value)):
                why = spec.get("ConstraintDescription")
                detail = f"failed to satisfy constraint: {why}" if why else f"must match pattern {pattern}"
                raise TemplateError(f"ValidationError: Parameter '{name}' {detail}")
        for rule_name, rule in template.get("Rules", {}).items():
            if "RuleCondition" in rule and not self._rule_value(rule_name, rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions", []):
                if not self._rule_value(rule_name, assertion["Assert"]):
                    raise TemplateError(f"ValidationError: {assertion.get('AssertDescription') or rule_name}")

    def _rule_value(self, rule_name: str, expression: Any) -> bool:
        value = self.resolver.resolve(expression)
        if not isinstance(value, bool):  # a rule function the local resolver lacks must not pass silently
            raise TemplateError(f"rule {rule_name}: {json.dumps(expression)} is not evaluable locally")
        return value

    def _check_references(self, resources: dict[str, Any]) -> None:
        """A state machine or rule that names a function the template lacks stops provisioning, by name."""
        from loupe_local.template import references

        known = set(resources) | set(self.app.transformed.get("Parameters", {}))
        for logical_id, res in resources.items():
            missing = {r for r in references(res.get("Properties", {})) if r not in known and not r.startswith("AWS::")}
            if missing:
                raise TemplateError(f"{logical_id} ({res['Type']}) refers to {sorted(missing)}, not in template.yaml")

    # ------------------------------------------------------------------ creators
    def _bucket(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("BucketName") or self.physical_name(logical_id)
        s3 = self.client("s3")
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

    def _table(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("TableName") or self.physical_name(logical_id, 255, lower=False)
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
        ddb = self.client("dynamodb")
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

    def _topic(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("TopicName") or self.physical_name(logical_id, 256, lower=False)
        arn = self.client("sns").create_topic(Name=name)["TopicArn"]
        return Provisioned(logical_id, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": name})

    def _queue(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("QueueName") or self.physical_name(logical_id, 80, lower=False)
        attributes = {
            k: str(props[k]).lower() if isinstance(props[k], bool) else str(props[k])
            for k in ("MessageRetentionPeriod", "VisibilityTimeout", "SqsManagedSseEnabled")
            if k in props
        }
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Provisioned(logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _role(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("RoleName") or self.physical_name(logical_id, 64, lower=False)
        iam = self.client("iam")
        role = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(props.get("AssumeRolePolicyDocument", {}))
        )["Role"]
        for policy in props.get("Policies", []):
            document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
        return Provisioned(logical_id, "AWS::IAM::Role", name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})

    def _function(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("FunctionName") or self.physical_name(logical_id, 64, lower=False)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("README", "code runs in-process from the repository; see loupe_local.invoker")
        env = props.get("Environment", {}).get("Variables", {})
        fn = self.client("lambda").create_function(
            FunctionName=name,
            Runtime=props.get("Runtime", "python3.12"),
            Role=props["Role"],
            Handler=props.get("Handler", "app.lambda_handler"),
            Code={"ZipFile": buf.getvalue()},
            Timeout=int(props.get("Timeout", 3)),
            MemorySize=int(props.get("MemorySize", 128)),
            Environment={"Variables": {k: str(v) for k, v in env.items()}},
        )
        return Provisioned(logical_id, "AWS::Lambda::Function", name, {"Arn": fn["FunctionArn"]})

    def _layer(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("LayerName") or self.physical_name(logical_id, 64, lower=False)
        arn = self.arn("lambda", f"layer:{name}:1")
        return Provisioned(
            logical_id,
            "AWS::Lambda::LayerVersion",
            arn,
            {},
            skipped="layer code is put on sys.path in-process",
        )

    def _log_group(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("LogGroupName") or self.physical_name(logical_id, 512, lower=False)
        logs = self.client("logs")
        logs.create_log_group(logGroupName=name)
        if props.get("RetentionInDays"):
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        return Provisioned(logical_id, "AWS::Logs::LogGroup", name, {"Arn": self.arn("logs", f"log-group:{name}:*")})

    def _event_invoke_config(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        """Stored in moto's Lambda; the router's asynchronous invocations read it (retries, on-failure)."""
        kwargs: dict[str, Any] = {"FunctionName": props["FunctionName"]}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
            if key in props:
                kwargs[key] = int(props[key]) if key != "DestinationConfig" else props[key]
        self.client("lambda").put_function_event_invoke_config(**kwargs)
        return Provisioned(logical_id, "AWS::Lambda::EventInvokeConfig", f"{props['FunctionName']}|$LATEST")

    def _state_machine(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("StateMachineName") or self.physical_name(logical_id, 80, lower=False)
        definition = props.get("DefinitionString")
        if definition is None:
            definition = json.dumps(props["Definition"])
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        leftover = re.findall(r"\$\{([A-Za-z0-9_]+)\}", definition)
        if leftover:
            raise TemplateError(f"{logical_id}: DefinitionSubstitutions lacks {sorted(set(leftover))}")
        self._check_task_targets(logical_id, json.loads(definition))
        arn = self.client("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=props["RoleArn"]
        )["stateMachineArn"]
        return Provisioned(logical_id, "AWS::StepFunctions::StateMachine", arn, {"Arn": arn, "Name": name})

    def _check_task_targets(self, logical_id: str, definition: dict[str, Any]) -> None:
        functions = {p.attrs.get("Arn") for p in self.done.values() if p.type == "AWS::Lambda::Function"}
        functions |= {p.ref for p in self.done.values() if p.type == "AWS::Lambda::Function"}

        def walk(states: dict[str, Any]) -> None:
            for state_name, state in states.items():
                target = (state.get("Parameters") or state.get("Arguments") or {}).get("FunctionName")
                if isinstance(target, str) and ":function:" in target and target.split(":$")[0] not in functions:
                    raise TemplateError(
                        f"{logical_id}: state {state_name} invokes {target}, a function template.yaml does not declare"
                    )
                for branch in state.get("Branches", []):
                    walk(branch.get("States", {}))
                for key in ("Iterator", "ItemProcessor"):
                    if key in state:
                        walk(state[key].get("States", {}))

        walk(definition.get("States", {}))

    def _rule(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("Name") or self.physical_name(logical_id, 64, lower=False)
        events = self.client("events")
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

    def _model_package_group(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("ModelPackageGroupName") or self.physical_name(logical_id, 63, lower=False)
        arn = self.client("sagemaker").create_model_package_group(
            ModelPackageGroupName=name,
            ModelPackageGroupDescription=props.get("ModelPackageGroupDescription", ""),
        )["ModelPackageGroupArn"]
        return Provisioned(
            logical_id,
            "AWS::SageMaker::ModelPackageGroup",
            arn,
            {"ModelPackageGroupArn": arn, "ModelPackageGroupName": name},
        )

    def _feature_group(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props["FeatureGroupName"]
        kwargs = {
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
        arn = self.client("sagemaker").create_feature_group(FeatureGroupName=name, **kwargs)["FeatureGroupArn"]
        return Provisioned(
            logical_id,
            "AWS::SageMaker::FeatureGroup",
            name,
            {"FeatureGroupArn": arn, "FeatureGroupName": name},
        )

    def _pipeline(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props["PipelineName"]
        definition = props["PipelineDefinition"]
        body = definition.get("PipelineDefinitionBody")
        if body is None:
            raise TemplateError(f"{logical_id}: only PipelineDefinitionBody is supported locally")
        self.client("sagemaker").create_pipeline(
            PipelineName=name,
            PipelineDefinition=body if isinstance(body, str) else json.dumps(body),
            RoleArn=props["RoleArn"],
            PipelineDescription=props.get("PipelineDescription", ""),
        )
        return Provisioned(logical_id, "AWS::SageMaker::Pipeline", name, {"PipelineName": name})

    def _thing_group(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("ThingGroupName") or self.physical_name(logical_id, 128, lower=False)
        out = self.client("iot").create_thing_group(
            thingGroupName=name, thingGroupProperties=_lower_keys(props.get("ThingGroupProperties", {}))
        )
        return Provisioned(
            logical_id, "AWS::IoT::ThingGroup", name, {"Arn": out["thingGroupArn"], "Id": out["thingGroupId"]}
        )

    def _topic_rule(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("RuleName") or re.sub(r"[^A-Za-z0-9_]", "_", self.physical_name(logical_id, 128, lower=False))
        payload = props["TopicRulePayload"]
        self.client("iot").create_topic_rule(
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
        return Provisioned(logical_id, "AWS::IoT::TopicRule", name, {"Arn": self.arn("iot", f"rule/{name}")})

    def _alarm(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("AlarmName") or self.physical_name(logical_id, 255, lower=False)
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
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
        return Provisioned(logical_id, "AWS::CloudWatch::Alarm", name, {"Arn": self.arn("cloudwatch", f"alarm:{name}")})

    def _dashboard(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        name = props.get("DashboardName") or self.physical_name(logical_id, 255, lower=False)
        body = props["DashboardBody"]
        self.client("cloudwatch").put_dashboard(
            DashboardName=name, DashboardBody=body if isinstance(body, str) else json.dumps(body)
        )
        return Provisioned(logical_id, "AWS::CloudWatch::Dashboard", name, {})


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


def _lower_keys(value: Any) -> Any:
    """CloudFormation's TopicRule action keys (Lambda, FunctionArn) -> the API's (lambda, functionArn)."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value
