"""template.yaml's IAM roles after the SAM transform, with intrinsics resolved to realistic names and ARNs.

Managed policies (ManagedPolicyArns) are not included: they are AWS's documents, loaded from moto in stage 2.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from loupe_local.iam.evaluate import Policy
from loupe_local.template import ACCOUNT_ID, Resolver, load_sam_app

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = ACCOUNT_ID
STACK = "loupe"


def name_of(logical: str) -> str:
    return f"{STACK}-{logical}".lower()


def arn_of(resources: dict[str, Any], logical: str) -> str:
    kind, name = resources[logical]["Type"], name_of(logical)
    service_arns = {
        "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
        "AWS::StepFunctions::StateMachine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}",
        "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
        "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
        "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
        "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
        "AWS::SageMaker::FeatureGroup": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:feature-group/{name}",
        "AWS::SageMaker::ModelPackageGroup": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{name}",
        "AWS::Events::EventBus": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}",
    }
    if kind in service_arns:
        return service_arns[kind]
    service = kind.split("::")[1].lower()
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical.lower()}/{name}"


@lru_cache(maxsize=1)
def transformed() -> dict[str, Any]:
    return load_sam_app(REPO_ROOT / "template.yaml").transformed


def resolver() -> Resolver:
    template = transformed()
    resources = template["Resources"]

    def ref(logical: str) -> str:
        kind = resources[logical]["Type"]
        if kind in ("AWS::SNS::Topic", "AWS::StepFunctions::StateMachine", "AWS::SageMaker::ModelPackageGroup"):
            return arn_of(resources, logical)  # these resources' Ref is their ARN
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name_of(logical)}"
        return name_of(logical)

    def get_att(logical: str, attr: str) -> str:
        if attr == "Arn":
            return arn_of(resources, logical)
        if attr == "QueueName":
            return name_of(logical)
        return name_of(logical)

    return Resolver(
        template,
        {"WorkteamArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/x"},
        STACK,
        REGION,
        ref,
        get_att,
    )


def role_policies() -> dict[str, list[Policy]]:
    """Each role's inline policies plus the AWS::IAM::Policy resources attached to it, parsed for evaluation."""
    resources = transformed()["Resources"]
    r = resolver()
    out: dict[str, list[Policy]] = {}
    for logical, res in resources.items():
        if res["Type"] == "AWS::IAM::Role":
            out.setdefault(logical, [])
            for item in res["Properties"].get("Policies", []):
                out[logical].append(Policy.parse(item["PolicyName"], r.resolve(item["PolicyDocument"])))
    for logical, res in resources.items():
        if res["Type"] == "AWS::IAM::Policy":
            props = res["Properties"]
            for role in props.get("Roles", []):
                target = role["Ref"] if isinstance(role, dict) else role
                out.setdefault(target, []).append(Policy.parse(logical, r.resolve(props["PolicyDocument"])))
    return out
