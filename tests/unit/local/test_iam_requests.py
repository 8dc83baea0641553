"""The local IAM resolver on the calls the stack makes, and every template role against one call it makes.

Needs policy_sentry (the `local` extra); skipped where it is not installed.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("policy_sentry")

from support.iam_template import ACCOUNT, REGION, name_of, role_policies  # noqa: E402

from loupe_local.iam.evaluate import Request, evaluate_all  # noqa: E402
from loupe_local.iam.requests import ACTION_SUPPLEMENT, UnresolvedRequest, _service, base_context, resolve  # noqa: E402

A = ACCOUNT
R = REGION
SMK = f"arn:aws:sagemaker:{R}:{A}"


def pairs(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a.action, a.resource) for a in resolve(service, operation, params, region=R, account=A)]


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        ("s3", "GetObject", {"Bucket": "b", "Key": "raw/x.jpg"}, [("s3:GetObject", "arn:aws:s3:::b/raw/x.jpg")]),
        ("s3", "PutObject", {"Bucket": "b", "Key": "a/b"}, [("s3:PutObject", "arn:aws:s3:::b/a/b")]),
        ("s3", "HeadObject", {"Bucket": "b", "Key": "k"}, [("s3:GetObject", "arn:aws:s3:::b/k")]),
        ("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "p/"}, [("s3:ListBucket", "arn:aws:s3:::b")]),
        ("s3", "UploadPart", {"Bucket": "b", "Key": "k", "UploadId": "u"}, [("s3:PutObject", "arn:aws:s3:::b/k")]),
        (
            "s3",
            "CopyObject",
            {"Bucket": "d", "Key": "k2", "CopySource": "s/k%201"},
            [("s3:GetObject", "arn:aws:s3:::s/k 1"), ("s3:PutObject", "arn:aws:s3:::d/k2")],
        ),
        (
            "dynamodb",
            "GetItem",
            {"TableName": "t", "Key": {}},
            [("dynamodb:GetItem", f"arn:aws:dynamodb:{R}:{A}:table/t")],
        ),
        ("dynamodb", "UpdateItem", {"TableName": "t"}, [("dynamodb:UpdateItem", f"arn:aws:dynamodb:{R}:{A}:table/t")]),
        ("dynamodb", "Query", {"TableName": "t"}, [("dynamodb:Query", f"arn:aws:dynamodb:{R}:{A}:table/t")]),
        (
            "dynamodb",
            "Query",
            {"TableName": "t", "IndexName": "by-device"},
            [("dynamodb:Query", f"arn:aws:dynamodb:{R}:{A}:table/t/index/by-device")],
        ),
        (
            "dynamodb",
            "BatchWriteItem",
            {"RequestItems": {"t2": [], "t1": []}},
            [
                ("dynamodb:BatchWriteItem", f"arn:aws:dynamodb:{R}:{A}:table/t1"),
                ("dynamodb:BatchWriteItem", f"arn:aws:dynamodb:{R}:{A}:table/t2"),
            ],
        ),
        (
            "states",
            "StartExecution",
            {"stateMachineArn": f"arn:aws:states:{R}:{A}:stateMachine:sm", "input": "{}"},
            [("states:StartExecution", f"arn:aws:states:{R}:{A}:stateMachine:sm")],
        ),
        ("states", "SendTaskSuccess", {"taskToken": "t", "output": "{}"}, [("states:SendTaskSuccess", "*")]),
        (
            "sagemaker",
            "CreateModelPackage",
            {"ModelPackageGroupName": "loupe-models"},
            [("sagemaker:CreateModelPackage", f"arn:aws:sagemaker:{R}:{A}:model-package-group/loupe-models")],
        ),
        (
            "sagemaker",
            "UpdateModelPackage",
            {"ModelPackageArn": f"arn:aws:sagemaker:{R}:{A}:model-package/loupe-models/3"},
            [("sagemaker:UpdateModelPackage", f"arn:aws:sagemaker:{R}:{A}:model-package/loupe-models/3")],
        ),
        ("sagemaker", "ListModelPackages", {"ModelPackageGroupName": "g"}, [("sagemaker:ListModelPackages", "*")]),
        (
            "iot-data",
            "Publish",
            {"topic": "loupe/dev-1/x"},
            [("iot:Publish", f"arn:aws:iot:{R}:{A}:topic/loupe/dev-1/x")],
        ),
        (
            "sns",
            "Publish",
            {"TopicArn": f"arn:aws:sns:{R}:{A}:notify", "Message": "m"},
            [("sns:Publish", f"arn:aws:sns:{R}:{A}:notify")],
        ),
        (
            "events",
            "PutEvents",
            {"Entries": [{"Source": "loupe"}, {"Source": "loupe", "EventBusName": "other"}]},
            [
                ("events:PutEvents", f"arn:aws:events:{R}:{A}:event-bus/default"),
                ("events:PutEvents", f"arn:aws:events:{R}:{A}:event-bus/other"),
            ],
        ),
        ("lambda", "Invoke", {"FunctionName": "f"}, [("lambda:InvokeFunction", f"arn:aws:lambda:{R}:{A}:function:f")]),
        (
            "lambda",
            "Invoke",
            {"FunctionName": f"arn:aws:lambda:{R}:{A}:function:f", "Qualifier": "live"},
            [("lambda:InvokeFunction", f"arn:aws:lambda:{R}:{A}:function:f:live")],
        ),
        (
            "sqs",
            "SendMessage",
            {"QueueUrl": f"http://127.0.0.1:4566/{A}/dlq", "MessageBody": "x"},
            [("sqs:SendMessage", f"arn:aws:sqs:{R}:{A}:dlq")],
        ),
        ("monitoring", "PutMetricData", {"Namespace": "Loupe"}, [("cloudwatch:PutMetricData", "*")]),
        ("s3", "GetBucketLocation", {"Bucket": "b"}, [("s3:GetBucketLocation", "arn:aws:s3:::b")]),
        (
            "sagemaker",
            "DescribeLabelingJob",
            {"LabelingJobName": "j"},
            [("sagemaker:DescribeLabelingJob", f"{SMK}:labeling-job/j")],
        ),
        (
            "sagemaker",
            "ListPipelineExecutionSteps",
            {"PipelineExecutionArn": f"{SMK}:pipeline/p/execution/e1"},
            [("sagemaker:ListPipelineExecutionSteps", f"{SMK}:pipeline/p/execution/e1")],
        ),
        (
            "sagemaker-featurestore-runtime",
            "PutRecord",
            {"FeatureGroupName": "fg"},
            [("sagemaker:PutRecord", f"{SMK}:feature-group/fg")],
        ),
        ("iot", "DescribeJob", {"jobId": "j"}, [("iot:DescribeJob", f"arn:aws:iot:{R}:{A}:job/j")]),
        (
            "iot",
            "DescribeThingGroup",
            {"thingGroupName": "g"},
            [("iot:DescribeThingGroup", f"arn:aws:iot:{R}:{A}:thinggroup/g")],
        ),
        (
            "greengrassv2",
            "ListEffectiveDeployments",
            {"coreDeviceThingName": "dev-1"},
            [("greengrass:ListEffectiveDeployments", f"arn:aws:greengrass:{R}:{A}:coreDevices:dev-1")],
        ),
        (
            "greengrassv2",
            "CreateComponentVersion",
            {"inlineRecipe": b"ComponentName: com.loupe.inference\nComponentVersion: 1.0.0\n"},
            [("greengrass:CreateComponentVersion", f"arn:aws:greengrass:{R}:{A}:components:com.loupe.inference")],
        ),
        (
            "logs",
            "PutLogEvents",
            {"logGroupName": "/aws/sagemaker/x", "logStreamName": "s"},
            [("logs:PutLogEvents", f"arn:aws:logs:{R}:{A}:log-group:/aws/sagemaker/x:log-stream:s")],
        ),
        ("sts", "GetCallerIdentity", {}, [("sts:GetCallerIdentity", "*")]),
    ],
)
def test_calls_the_stack_makes_resolve_to_their_documented_action_and_resource(
    service: str, operation: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert pairs(service, operation, params) == expected


def test_the_supplement_holds_only_what_the_data_cannot_resolve() -> None:
    for (prefix, operation), privilege in ACTION_SUPPLEMENT.items():
        privileges = _service(prefix)["privileges"]
        assert privilege in privileges, f"{prefix}:{privilege} is no IAM action"
        assert operation not in privileges, f"{prefix}:{operation} is now an action: drop it from the supplement"
        links = [
            n
            for n, s in privileges.items()
            if (s.get("api_documentation_link") or "").endswith(f"API_{operation}.html")
        ]
        assert not links, f"{prefix}:{operation} now resolves by documentation link to {links}: drop it"


WIRE_CALLS = [
    ("s3", "head_object", {"Bucket": "b", "Key": "a/b.jpg"}, [("s3:GetObject", "arn:aws:s3:::b/a/b.jpg")]),
    ("s3", "list_objects_v2", {"Bucket": "b", "Prefix": "p/"}, [("s3:ListBucket", "arn:aws:s3:::b")]),
    ("s3", "create_multipart_upload", {"Bucket": "b", "Key": "k"}, [("s3:PutObject", "arn:aws:s3:::b/k")]),
    (
        "lambda",
        "invoke",
        {"FunctionName": "fn", "Payload": b"{}"},
        [("lambda:InvokeFunction", f"arn:aws:lambda:{R}:{A}:function:fn")],
    ),
    (
        "dynamodb",
        "put_item",
        {"TableName": "T", "Item": {"pk": {"S": "DEVICE#1"}}},
        [("dynamodb:PutItem", f"arn:aws:dynamodb:{R}:{A}:table/T")],
    ),
    ("stepfunctions", "send_task_success", {"taskToken": "x", "output": "{}"}, [("states:SendTaskSuccess", "*")]),
    (
        "greengrassv2",
        "get_deployment",
        {"deploymentId": "d-1"},
        [("greengrass:GetDeployment", f"arn:aws:greengrass:{R}:{A}:deployments:d-1")],
    ),
    (
        "iot",
        "list_thing_groups_for_thing",
        {"thingName": "t1"},
        [("iot:ListThingGroupsForThing", f"arn:aws:iot:{R}:{A}:thing/t1")],
    ),
    (
        "sns",
        "publish",
        {"TopicArn": f"arn:aws:sns:{R}:{A}:t", "Message": "m"},
        [("sns:Publish", f"arn:aws:sns:{R}:{A}:t")],
    ),
    (
        "sagemaker-featurestore-runtime",
        "put_record",
        {"FeatureGroupName": "fg", "Record": [{"FeatureName": "a", "ValueAsString": "1"}]},
        [("sagemaker:PutRecord", f"arn:aws:sagemaker:{R}:{A}:feature-group/fg")],
    ),
]


@pytest.mark.parametrize(("service", "method", "params", "expected"), WIRE_CALLS)
def test_requests_as_botocore_sends_them_parse_and_resolve(
    service: str, method: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    import botocore.session

    from loupe_local.host.moto_patches import parse_request

    sent: list[Any] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request)
        raise _Stop

    client = botocore.session.get_session().create_client(
        service,
        region_name=R,
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )
    client.meta.events.register("before-send", capture)
    with pytest.raises(_Stop):
        getattr(client, method)(**params)
    (request,) = sent
    operation, parsed = parse_request(service, request.method, request.url, request.headers, request.body)
    assert operation == client.meta.method_to_api_mapping[method]
    assert [(a.action, a.resource) for a in resolve(service, operation, parsed, region=R, account=A)] == expected


class _Stop(Exception):
    pass


def test_an_arn_inside_free_form_input_never_chooses_the_resource() -> None:
    quarantine = f"arn:aws:s3:::{name_of('RawBucket')}/quarantine/x.jpg"
    put = {"Bucket": name_of("ArtifactBucket"), "Key": "models/evil.onnx", "Metadata": {"source": quarantine}}
    assert pairs("s3", "PutObject", put) == [
        ("s3:PutObject", f"arn:aws:s3:::{name_of('ArtifactBucket')}/models/evil.onnx")
    ]
    assert decide("IngestImageFunctionRole", "s3", "PutObject", put, {}) == "ImplicitDeny"
    topic = f"arn:aws:sns:{R}:{A}:{name_of('NotifyTopic')}"
    publish = {"TargetArn": f"arn:aws:sns:{R}:{A}:other", "MessageAttributes": {"a": {"StringValue": topic}}}
    assert pairs("sns", "Publish", publish) == [("sns:Publish", f"arn:aws:sns:{R}:{A}:other")]


def test_service_condition_keys_named_like_an_input_member_enter_the_context() -> None:
    (auth,) = resolve("monitoring", "PutMetricData", {"Namespace": "Loupe"}, region=R, account=A)
    assert auth.context["cloudwatch:namespace"] == "Loupe"
    (listing,) = resolve("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "p/"}, region=R, account=A)
    assert listing.context["s3:prefix"] == "p/"


def test_a_required_resource_the_input_does_not_name_is_an_error_not_a_star() -> None:
    with pytest.raises(UnresolvedRequest, match="sns:Publish requires resource type"):
        resolve("sns", "Publish", {"Message": "no topic"}, region=R, account=A)


def test_a_component_version_whose_recipe_names_no_component_is_refused_with_the_reason() -> None:
    with pytest.raises(UnresolvedRequest, match="names no component"):
        resolve("greengrassv2", "CreateComponentVersion", {"inlineRecipe": b"{}"}, region=R, account=A)


def test_an_operation_with_no_iam_action_is_an_error_naming_it() -> None:
    with pytest.raises(UnresolvedRequest, match="s3:NoSuchOperation"):
        resolve("s3", "NoSuchOperation", {}, region=R, account=A)


# ------------------------------------------------------------------ the template's roles

SM = f"arn:aws:states:{R}:{A}:stateMachine"
QUEUE = f"https://sqs.{R}.amazonaws.com/{A}"

# role -> one call it makes (service, operation, input, extra context)
KNOWN_CALLS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "SageMakerExecutionRole": (
        "sagemaker",
        "CreateModelPackage",
        {"ModelPackageGroupName": "loupe-models", "ModelApprovalStatus": "PendingManualApproval"},
        {},
    ),
    "GreengrassTokenExchangeRole": (
        "s3",
        "PutObject",
        {"Bucket": name_of("RawBucket"), "Key": "raw/feedback/dev-1/f.jpg"},
        {"credentials-iot:ThingName": "dev-1"},
    ),
    "IotRuleErrorRole": ("sqs", "SendMessage", {"QueueUrl": f"{QUEUE}/{name_of('IotErrorQueue')}"}, {}),
    "IngestImageFunctionRole": ("events", "PutEvents", {"Entries": [{"Source": "loupe.ingest"}]}, {}),
    "LabelingTriggerFunctionRole": (
        "states",
        "StartExecution",
        {"stateMachineArn": f"{SM}:{name_of('LabelingStateMachine')}"},
        {},
    ),
    "LabelingTasksFunctionRole": (
        "sagemaker",
        "CreateLabelingJob",
        {"LabelingJobName": "loupe-batch-1", "RoleArn": f"arn:aws:iam::{A}:role/{name_of('SageMakerExecutionRole')}"},
        {},
    ),
    "LabelingCallbackFunctionRole": ("states", "SendTaskSuccess", {"taskToken": "t", "output": "{}"}, {}),
    "PipelineEventsFunctionRole": ("sns", "Publish", {"TopicArn": f"arn:aws:sns:{R}:{A}:{name_of('NotifyTopic')}"}, {}),
    "TrainingCodePublisherRole": (
        "s3",
        "PutObject",
        {"Bucket": name_of("ArtifactBucket"), "Key": "code/training/abc.tar.gz"},
        {},
    ),
    "ModelPackageEventsFunctionRole": ("sagemaker", "ListModelPackages", {"ModelPackageGroupName": "loupe-models"}, {}),
    "DeploymentTasksFunctionRole": (
        "greengrassv2",
        "CreateComponentVersion",
        {"inlineRecipe": b'{"ComponentName": "com.loupe.inference", "ComponentVersion": "1.2.0"}'},
        {},
    ),
    "FeedbackFunctionRole": (
        "dynamodb",
        "UpdateItem",
        {"TableName": name_of("LedgerTable"), "Key": {"pk": {"S": "IMAGE#1"}}},
        {},
    ),
    "EdgeHealthFunctionRole": (
        "dynamodb",
        "PutItem",
        {"TableName": name_of("DeploymentsTable"), "Item": {"pk": {"S": "DEVICE#dev-1"}}},
        {"dynamodb:LeadingKeys": ["DEVICE#dev-1"]},  # resolved from the key schema in stage 2
    ),
    "ConsoleApiFunctionRole": (
        "sagemaker",
        "UpdateModelPackage",
        {"ModelPackageArn": f"arn:aws:sagemaker:{R}:{A}:model-package/loupe-models/3"},
        {},
    ),
    "LabelingStateMachineRole": ("lambda", "Invoke", {"FunctionName": name_of("LabelingTasksFunction")}, {}),
    "TrainingStateMachineRole": ("sagemaker", "StartPipelineExecution", {"PipelineName": "loupe-training"}, {}),
    "TrainingStateMachineRetrainRole": (
        "states",
        "StartExecution",
        {"stateMachineArn": f"{SM}:{name_of('TrainingStateMachine')}"},
        {},
    ),
    "EdgeDeploymentStateMachineRole": (
        "lambda",
        "Invoke",
        {"FunctionName": f"arn:aws:lambda:{R}:{A}:function:{name_of('DeploymentTasksFunction')}"},
        {},
    ),
}


def decide(role: str, service: str, operation: str, params: dict[str, Any], extra: dict[str, Any]) -> str:
    principal = f"arn:aws:sts::{A}:assumed-role/{name_of(role)}/session"
    context = {**base_context(principal, A, R), **extra}
    auths = resolve(service, operation, params, region=R, account=A, context=context)
    return evaluate_all(role_policies()[role], [Request(a.action, a.resource, a.context) for a in auths]).decision


def test_a_call_that_passes_a_role_needs_pass_role_to_that_service() -> None:
    role = f"arn:aws:iam::{A}:role/{name_of('SageMakerExecutionRole')}"
    job = {"LabelingJobName": "loupe-batch-1", "RoleArn": role}
    auths = resolve("sagemaker", "CreateLabelingJob", job, region=R, account=A)
    assert [(a.action, a.resource) for a in auths] == [
        ("sagemaker:CreateLabelingJob", f"arn:aws:sagemaker:{R}:{A}:labeling-job/loupe-batch-1"),
        ("iam:PassRole", role),
    ]
    assert auths[1].context["iam:PassedToService"] == "sagemaker.amazonaws.com"
    assert decide("LabelingTasksFunctionRole", "sagemaker", "CreateLabelingJob", job, {}) == "Allow"
    other = {**job, "RoleArn": f"arn:aws:iam::{A}:role/{name_of('IotRuleErrorRole')}"}
    assert decide("LabelingTasksFunctionRole", "sagemaker", "CreateLabelingJob", other, {}) == "ImplicitDeny"


def test_a_deployment_needs_the_iot_job_and_shadow_actions_on_its_target() -> None:
    group = f"arn:aws:iot:{R}:{A}:thinggroup/fleet"
    got = pairs("greengrassv2", "CreateDeployment", {"targetArn": group, "components": {}})
    assert got[0] == ("greengrass:CreateDeployment", "*")
    assert ("iot:CreateJob", f"arn:aws:iot:{R}:{A}:job/*") in got
    assert ("iot:CreateJob", group) in got
    assert ("iot:DescribeThingGroup", group) in got
    assert ("iot:GetThingShadow", f"arn:aws:iot:{R}:{A}:thing/*") in got


def test_the_deployment_tasks_deploy_only_to_the_fleet_thing_group() -> None:
    fleet = f"arn:aws:iot:{R}:{A}:thinggroup/loupe-edge-fleet"
    role = "DeploymentTasksFunctionRole"
    assert decide(role, "greengrassv2", "CreateDeployment", {"targetArn": fleet}, {}) == "Allow"
    other = f"arn:aws:iot:{R}:{A}:thinggroup/someone-elses-devices"
    assert decide(role, "greengrassv2", "CreateDeployment", {"targetArn": other}, {}) == "ImplicitDeny"


def test_leading_keys_come_from_the_partition_key_of_the_item() -> None:
    table = name_of("DeploymentsTable")
    keys = {table: "pk"}
    device = {"TableName": table, "Item": {"pk": {"S": "DEVICE#dev-1"}, "sk": {"S": "x"}}}
    model = {"TableName": table, "Item": {"pk": {"S": "MODEL#m1"}, "sk": {"S": "x"}}}
    (auth,) = resolve("dynamodb", "PutItem", device, region=R, account=A, partition_keys=keys)
    assert auth.context["dynamodb:LeadingKeys"] == ["DEVICE#dev-1"]
    policies = role_policies()["EdgeHealthFunctionRole"]
    for item, decision in ((device, "Allow"), (model, "ImplicitDeny")):
        auths = resolve("dynamodb", "PutItem", item, region=R, account=A, partition_keys=keys)
        assert evaluate_all(policies, [Request(a.action, a.resource, a.context) for a in auths]).decision == decision


def test_every_role_of_the_template_has_a_known_call() -> None:
    assert set(KNOWN_CALLS) == set(role_policies())


@pytest.mark.parametrize("role", sorted(KNOWN_CALLS))
def test_each_template_role_is_allowed_a_call_it_makes(role: str) -> None:
    assert decide(role, *KNOWN_CALLS[role]) == "Allow"


@pytest.mark.parametrize(
    ("role", "call"),
    [
        # a device writes feedback only under its own thing name (the ${credentials-iot:ThingName} variable)
        (
            "GreengrassTokenExchangeRole",
            (
                "s3",
                "PutObject",
                {"Bucket": name_of("RawBucket"), "Key": "raw/feedback/dev-2/f.jpg"},
                {"credentials-iot:ThingName": "dev-1"},
            ),
        ),
        # EdgeHealth writes only DEVICE# partitions of the deployments table
        (
            "EdgeHealthFunctionRole",
            (
                "dynamodb",
                "PutItem",
                {"TableName": name_of("DeploymentsTable")},
                {"dynamodb:LeadingKeys": ["MODEL#m1"]},
            ),
        ),
        # the console approves packages of its group, it cannot create them
        ("ConsoleApiFunctionRole", ("sagemaker", "CreateModelPackage", {"ModelPackageGroupName": "loupe-models"}, {})),
        # the callback function cannot start executions
        (
            "LabelingCallbackFunctionRole",
            ("states", "StartExecution", {"stateMachineArn": f"{SM}:{name_of('TrainingStateMachine')}"}, {}),
        ),
        # the deployment tasks publish only com.loupe.* components
        (
            "DeploymentTasksFunctionRole",
            (
                "greengrassv2",
                "CreateComponentVersion",
                {"inlineRecipe": b'{"ComponentName": "aws.greengrass.Nucleus"}'},
                {},
            ),
        ),
        # the labeling state machine invokes its own task function only
        ("LabelingStateMachineRole", ("lambda", "Invoke", {"FunctionName": name_of("DeploymentTasksFunction")}, {})),
    ],
)
def test_template_roles_are_denied_calls_outside_their_grant(
    role: str, call: tuple[str, str, dict[str, Any], dict[str, Any]]
) -> None:
    assert decide(role, *call) == "ImplicitDeny"


def _device_fence(table: str) -> list[Any]:
    """A grant fenced to the devices' partitions, as EdgeHealth's PutItem is, on the reads and batch writes."""
    from loupe_local.iam.evaluate import Policy

    statement = {
        "Effect": "Allow",
        "Action": ["dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"],
        "Resource": f"arn:aws:dynamodb:{R}:{A}:table/{table}",
        "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["DEVICE#*"]}},
    }
    return [Policy.parse("fence", {"Version": "2012-10-17", "Statement": [statement]})]


def test_leading_keys_of_a_query_come_from_its_key_condition() -> None:
    table = name_of("DeploymentsTable")
    keys = {table: "pk"}
    policies = _device_fence(table)

    def query(**params: Any) -> tuple[list[Any], str]:
        auths = resolve("dynamodb", "Query", {"TableName": table, **params}, region=R, account=A, partition_keys=keys)
        requests = [Request(a.action, a.resource, a.context) for a in auths]
        return [a.context.get("dynamodb:LeadingKeys") for a in auths], evaluate_all(policies, requests).decision

    aliased = {"ExpressionAttributeNames": {"#p": "pk", "#s": "sk"}}
    device = {":v": {"S": "DEVICE#dev-1"}, ":s": {"S": "2026"}}
    expression = "#p = :v AND begins_with(#s, :s)"
    assert query(KeyConditionExpression=expression, ExpressionAttributeValues=device, **aliased) == (
        [["DEVICE#dev-1"]],
        "Allow",
    )
    # the value on the left, the attribute by its own name: the same key
    model = {":v": {"S": "MODEL#m1"}}
    assert query(KeyConditionExpression=":v = pk", ExpressionAttributeValues=model) == ([["MODEL#m1"]], "ImplicitDeny")
    legacy = {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "MODEL#m1"}]}}
    assert query(KeyConditions=legacy)[1] == "ImplicitDeny"
    # a key condition whose partition value cannot be read is unresolved, never an absent key (ForAllValues: true)
    with pytest.raises(UnresolvedRequest, match="partition key pk"):
        query(KeyConditionExpression="sk = :v", ExpressionAttributeValues=model)


def test_leading_keys_of_batch_calls_are_every_item_of_each_table() -> None:
    table = name_of("DeploymentsTable")
    keys = {table: "pk"}
    policies = _device_fence(table)

    def batch(operation: str, params: dict[str, Any]) -> tuple[Any, str]:
        (auth,) = resolve("dynamodb", operation, params, region=R, account=A, partition_keys=keys)
        decision = evaluate_all(policies, [Request(auth.action, auth.resource, auth.context)]).decision
        return auth.context.get("dynamodb:LeadingKeys"), decision

    def write(*partitions: str) -> dict[str, Any]:
        puts = [{"PutRequest": {"Item": {"pk": {"S": p}, "sk": {"S": "x"}}}} for p in partitions[:-1]]
        delete = {"DeleteRequest": {"Key": {"pk": {"S": partitions[-1]}, "sk": {"S": "x"}}}}
        return {"RequestItems": {table: [*puts, delete]}}

    assert batch("BatchWriteItem", write("DEVICE#a", "DEVICE#b", "DEVICE#a")) == (["DEVICE#a", "DEVICE#b"], "Allow")
    # one MODEL# item among the devices' refuses the whole batch (ForAllValues), a delete included
    assert batch("BatchWriteItem", write("DEVICE#a", "MODEL#m1", "DEVICE#b"))[1] == "ImplicitDeny"
    assert batch("BatchWriteItem", write("DEVICE#a", "MODEL#m1"))[1] == "ImplicitDeny"
    gets = {"RequestItems": {table: {"Keys": [{"pk": {"S": "DEVICE#a"}, "sk": {"S": "x"}}, {"pk": {"S": "TG#x"}}]}}}
    assert batch("BatchGetItem", gets) == (["DEVICE#a", "TG#x"], "ImplicitDeny")


def test_a_transaction_is_authorized_item_by_item_as_the_operation_each_performs() -> None:
    """DynamoDB Developer Guide, "Using IAM with DynamoDB transactions": no TransactWriteItems action, but each item's
    PutItem / UpdateItem / DeleteItem / ConditionCheckItem (GetItem for TransactGetItems) on its table, each with its
    own partition key."""
    from loupe_local.iam.evaluate import Policy

    table = name_of("DeploymentsTable")
    keys = {table: "pk"}
    statement = {
        "Effect": "Allow",
        "Action": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
        "Resource": f"arn:aws:dynamodb:{R}:{A}:table/{table}",
        "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["JOB#*", "ASSIGN#*"]}},
    }
    policies = [Policy.parse("tasks", {"Version": "2012-10-17", "Statement": [statement]})]

    def transact(*entries: dict[str, Any], operation: str = "TransactWriteItems") -> tuple[list[Any], str]:
        auths = resolve(
            "dynamodb", operation, {"TransactItems": list(entries)}, region=R, account=A, partition_keys=keys
        )
        requests = [Request(a.action, a.resource, a.context) for a in auths]
        return [(a.action, a.context.get("dynamodb:LeadingKeys")) for a in auths], evaluate_all(
            policies, requests
        ).decision

    put = {"Put": {"TableName": table, "Item": {"pk": {"S": "JOB#j1"}, "sk": {"S": "0"}}}}
    update = {"Update": {"TableName": table, "Key": {"pk": {"S": "ASSIGN#a1"}, "sk": {"S": "ASSIGN"}}}}
    assert transact(put, update) == (
        [("dynamodb:PutItem", ["JOB#j1"]), ("dynamodb:UpdateItem", ["ASSIGN#a1"])],
        "Allow",
    )
    # an item outside the fenced partitions, or an operation the role lacks, refuses the whole transaction
    other = {"Put": {"TableName": table, "Item": {"pk": {"S": "MODEL#m"}, "sk": {"S": "0"}}}}
    assert transact(put, other)[1] == "ImplicitDeny"
    check = {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "JOB#j1"}, "sk": {"S": "0"}}}}
    assert transact(put, check) == (
        [("dynamodb:PutItem", ["JOB#j1"]), ("dynamodb:ConditionCheckItem", ["JOB#j1"])],
        "ImplicitDeny",
    )
    get = {"Get": {"TableName": table, "Key": {"pk": {"S": "JOB#j1"}, "sk": {"S": "0"}}}}
    assert transact(get, operation="TransactGetItems") == ([("dynamodb:GetItem", ["JOB#j1"])], "ImplicitDeny")
    with pytest.raises(UnresolvedRequest, match="names no item"):
        transact()
