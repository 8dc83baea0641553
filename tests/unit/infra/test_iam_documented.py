"""IAM grants that AWS documents and a real account enforces, checked on template.yaml as SAM transforms it.

- An action with no resource type matches only ``"*"``: a statement that names ARNs for it never matches, and the
  call is denied (Service Authorization Reference: "If there is no value for this column, you must specify all
  resources ("*")").
- An action's dependent actions must be granted too (Service Authorization Reference, "Dependent actions").
- Greengrass core devices ask for an artifact bucket's location before they download from it: the token exchange
  role needs s3:GetBucketLocation on each bucket it reads artifacts from (Greengrass developer guide, "Authorize
  core devices to interact with AWS services"; troubleshooting: S3_GET_BUCKET_LOCATION_ACCESS_DENIED).

Facts from the Service Authorization Reference (AWS IoT Greengrass V2), for the actions the stack uses. Each rule
runs against the real template and against a known-bad sample, so it cannot pass by checking nothing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from loupe_local.template import SamApp, load_sam_app

REPO_ROOT = Path(__file__).resolve().parents[3]

NO_RESOURCE_TYPE = {
    "greengrass:CreateDeployment",
    "greengrass:ListCoreDevices",
    "greengrass:ListComponents",
    "greengrass:ListDeployments",
}
DEPENDENT_ACTIONS = {
    "greengrass:CreateDeployment": [
        "iot:CancelJob",
        "iot:CreateJob",
        "iot:DeleteThingShadow",
        "iot:DescribeJob",
        "iot:DescribeThing",
        "iot:DescribeThingGroup",
        "iot:GetThingShadow",
        "iot:UpdateJob",
        "iot:UpdateThingShadow",
    ],
    "greengrass:GetDeployment": [
        "iot:DescribeJob",
        "iot:DescribeThing",
        "iot:DescribeThingGroup",
        "iot:GetThingShadow",
    ],
    "greengrass:ListEffectiveDeployments": [
        "iot:DescribeJob",
        "iot:DescribeJobExecution",
        "iot:DescribeThing",
        "iot:DescribeThingGroup",
        "iot:GetThingShadow",
    ],
    "greengrass:ListDeployments": [
        "iot:DescribeJob",
        "iot:DescribeThing",
        "iot:DescribeThingGroup",
        "iot:GetThingShadow",
    ],
}


@pytest.fixture(scope="module")
def app() -> SamApp:
    return load_sam_app(REPO_ROOT / "template.yaml")


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(resources: dict[str, Any]) -> dict[str, list[tuple[str, list[Any]]]]:
    """Each role's allowed (action, resources)."""
    out: dict[str, list[tuple[str, list[Any]]]] = {}
    for name, res in resources.items():
        if res.get("Type") != "AWS::IAM::Role":
            continue
        for policy in res.get("Properties", {}).get("Policies", []):
            for st in _listify(policy.get("PolicyDocument", {}).get("Statement", [])):
                if st.get("Effect") == "Allow":
                    for action in _listify(st.get("Action", [])):
                        out.setdefault(name, []).append((action, _listify(st.get("Resource"))))
    return out


def resource_type_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    for role, granted in grants(resources).items():
        for action, where in granted:
            if action in NO_RESOURCE_TYPE and "*" not in where:
                problems.append(
                    f"{role}: {action} has no resource type; granted on {json.dumps(where)} it never matches"
                )
    return problems


def dependent_action_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    for role, granted in grants(resources).items():
        actions = {a for a, _ in granted}
        for action, needs in DEPENDENT_ACTIONS.items():
            if action in actions:
                problems += [f"{role}: {action} without its dependent action {n}" for n in needs if n not in actions]
    return problems


def _bucket_of(resource: Any) -> str | None:
    """The logical id of the template bucket an ARN (``${X.Arn}/...`` or GetAtt X.Arn) is in."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return str(resource["Fn::GetAtt"][0])
    if isinstance(resource, dict) and isinstance(resource.get("Fn::Sub"), str) and resource["Fn::Sub"].startswith("${"):
        ref = resource["Fn::Sub"][2:].split("}", 1)[0]
        return ref[: -len(".Arn")] if ref.endswith(".Arn") else None
    return None


def artifact_bucket_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    roles = grants(resources)
    for name, res in resources.items():
        trust = json.dumps(res.get("Properties", {}).get("AssumeRolePolicyDocument", {}))
        if res.get("Type") != "AWS::IAM::Role" or "credentials.iot.amazonaws.com" not in trust:
            continue
        read = {_bucket_of(r) for a, where in roles.get(name, []) if a == "s3:GetObject" for r in where}
        located = {_bucket_of(r) for a, where in roles.get(name, []) if a == "s3:GetBucketLocation" for r in where}
        problems += [
            f"{name}: reads artifacts from {bucket} without s3:GetBucketLocation on it"
            for bucket in sorted(b for b in read - located if b)
        ]
    return problems


def test_actions_without_a_resource_type_are_granted_on_star(app) -> None:
    assert any(a == "greengrass:CreateDeployment" for g in grants(app.resources).values() for a, _ in g)
    assert resource_type_problems(app.resources) == []


def test_every_greengrass_action_comes_with_its_dependent_actions(app) -> None:
    assert dependent_action_problems(app.resources) == []


def test_the_token_exchange_role_can_locate_the_artifact_bucket(app) -> None:
    assert artifact_bucket_problems(app.resources) == []


def test_the_rules_catch_the_undocumented_forms(app) -> None:
    bad = copy.deepcopy(app.resources)
    statements = bad["DeploymentTasksFunctionRole"]["Properties"]["Policies"]
    for policy in statements:
        for st in _listify(policy.get("PolicyDocument", {}).get("Statement", [])):
            if "greengrass:CreateDeployment" in _listify(st.get("Action")):
                st["Resource"] = ["arn:aws:greengrass:us-east-1:123456789012:deployments:*"]
            if "iot:UpdateThingShadow" in _listify(st.get("Action")):
                st["Action"] = [a for a in st["Action"] if a != "iot:UpdateThingShadow"]
    assert any("CreateDeployment has no resource type" in p for p in resource_type_problems(bad))
    assert (
        "DeploymentTasksFunctionRole: greengrass:CreateDeployment without its dependent action iot:UpdateThingShadow"
        in (dependent_action_problems(bad))
    )
    token = bad["GreengrassTokenExchangeRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    token["Statement"] = [st for st in token["Statement"] if st.get("Action") != "s3:GetBucketLocation"]
    assert artifact_bucket_problems(bad) == [
        "GreengrassTokenExchangeRole: reads artifacts from ArtifactBucket without s3:GetBucketLocation on it"
    ]


# AmazonSageMakerFeatureStoreAccess (AWS managed policy reference, v3): what the offline store's role does on its S3
# location (objects, the bucket, the metadata files) and, unless DisableGlueTableCreation, on its Glue table.
OFFLINE_STORE_OBJECT_ACTIONS = ("s3:PutObject", "s3:PutObjectAcl")
OFFLINE_STORE_BUCKET_ACTIONS = ("s3:GetBucketAcl",)
OFFLINE_STORE_METADATA_ACTIONS = ("s3:GetObject",)
OFFLINE_STORE_GLUE_ACTIONS = ("glue:GetTable", "glue:UpdateTable")


def _covers(granted: Any, wanted: str) -> bool:
    """Whether a granted resource (``${Bucket.Arn}/prefix*``, GetAtt Bucket.Arn, ``*``) covers ``wanted``, both
    written as ``<bucket logical id>/<key>`` (``<id>`` for the bucket itself)."""
    if granted == "*":
        return True
    if isinstance(granted, dict) and "Fn::GetAtt" in granted:
        return wanted == granted["Fn::GetAtt"][0]
    if isinstance(granted, dict) and isinstance(granted.get("Fn::Sub"), str):
        text = granted["Fn::Sub"]
        if text.startswith("${") and ".Arn}" in text:
            pattern = text[2:].replace(".Arn}", "", 1)
            if pattern.endswith("*"):
                return wanted.startswith(pattern[:-1])
            return wanted == pattern
    return False


def offline_store_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    roles = grants(resources)
    for name, res in resources.items():
        if res.get("Type") != "AWS::SageMaker::FeatureGroup":
            continue
        props = res.get("Properties", {})
        offline = props.get("OfflineStoreConfig")
        if not offline:
            continue
        role = (props.get("RoleArn") or {}).get("Fn::GetAtt", [""])[0]
        uri = offline.get("S3StorageConfig", {}).get("S3Uri", {}).get("Fn::Sub", "")
        bucket_ref, _, prefix = uri.removeprefix("s3://${").partition("}/")
        wanted = [(a, f"{bucket_ref}/{prefix}x") for a in OFFLINE_STORE_OBJECT_ACTIONS]
        wanted += [(a, bucket_ref) for a in OFFLINE_STORE_BUCKET_ACTIONS]
        wanted += [
            (a, f"{bucket_ref}/{prefix}x/sagemaker/r/offline-store/g/metadata/m")
            for a in OFFLINE_STORE_METADATA_ACTIONS
        ]
        if not offline.get("DisableGlueTableCreation"):
            wanted += [(a, "glue") for a in OFFLINE_STORE_GLUE_ACTIONS]
        for action, target in wanted:
            if not any(a == action and any(_covers(r, target) for r in where) for a, where in roles.get(role, [])):
                problems.append(f"{name}: its offline store role {role} lacks {action} on {target}")
    return problems


def test_the_offline_store_role_has_what_the_feature_store_documents(app) -> None:
    assert any(r.get("Type") == "AWS::SageMaker::FeatureGroup" for r in app.resources.values())
    assert offline_store_problems(app.resources) == []


def test_the_offline_store_rule_catches_a_missing_acl_grant_and_glue(app) -> None:
    bad = copy.deepcopy(app.resources)
    doc = bad["SageMakerExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    for st in doc["Statement"]:
        st["Action"] = [a for a in _listify(st["Action"]) if a != "s3:PutObjectAcl"]
    group = next(r for r in bad.values() if r.get("Type") == "AWS::SageMaker::FeatureGroup")
    group["Properties"]["OfflineStoreConfig"]["DisableGlueTableCreation"] = False
    problems = offline_store_problems(bad)
    assert any("lacks s3:PutObjectAcl on ArtifactBucket/feature-store/" in p for p in problems)
    assert any("lacks glue:UpdateTable" in p for p in problems)


# SageMaker List- calls authorized on no particular resource: the developer guide's API Permissions Reference says
# "Except for the ListTags API, resource-level restrictions are not available on List- calls", and the botocore
# model of ListModelPackages names no resource (no ARN, nothing required: the group is an optional filter), so
# there is no package ARN a statement could match. ListPipelineExecutionSteps, by contrast, is asked about one
# execution ARN (pipeline-execution in the Service Authorization Reference) and keeps its ARN grant.
LIST_ON_NO_RESOURCE = {"sagemaker:ListModelPackages"}


def sagemaker_list_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    for role, granted in grants(resources).items():
        for action, where in granted:
            if action in LIST_ON_NO_RESOURCE and "*" not in where:
                problems.append(f"{role}: {action} is authorized on no resource; granted on ARNs it is denied")
    return problems


def test_botocore_s_model_of_list_model_packages_names_no_resource() -> None:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker").operation_model("ListModelPackages")
    members = model.input_shape.members
    assert not model.input_shape.required_members
    assert not [m for m in members if m.endswith("Arn")]
    assert "ModelPackageGroupName" in members  # a filter, not the resource


def test_sagemaker_list_calls_are_granted_on_star(app) -> None:
    assert any(a == "sagemaker:ListModelPackages" for g in grants(app.resources).values() for a, _ in g)
    assert sagemaker_list_problems(app.resources) == []


def test_the_list_rule_catches_a_list_call_on_arns(app) -> None:
    bad = copy.deepcopy(app.resources)
    doc = bad["SageMakerExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    doc["Statement"].append(
        {
            "Effect": "Allow",
            "Action": "sagemaker:ListModelPackages",
            "Resource": "arn:aws:sagemaker:r:1:model-package/g/*",
        }
    )
    assert sagemaker_list_problems(bad) == [
        "SageMakerExecutionRole: sagemaker:ListModelPackages is authorized on no resource; granted on ARNs it is denied"
    ]
