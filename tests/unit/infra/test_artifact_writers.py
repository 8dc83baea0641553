"""Who may put objects where in the artifact bucket (template.yaml after the SAM transform, intrinsics resolved).

Every training job runs ``code/training/sourcedir.tar.gz``, and a job unpickles what the bucket gives it
(warm-start weights, checkpoints): only the TrainingCodePublisher custom resource's role may put objects under
``code/``, only the SageMaker jobs' role under the pipeline's prefixes, and every role writes only the prefixes its
work needs, each named in its policy (explicit scoping, no Deny). The rule runs against the real template and
against a known-bad sample, so it cannot pass by checking nothing.
"""

from __future__ import annotations

import fnmatch
import functools
import json
from pathlib import Path
from typing import Any

import pytest

from loupe_local.template import Resolver, load_sam_app

REPO = Path(__file__).resolve().parents[3]
STACK = "loupe"


@functools.cache
def _transformed() -> dict[str, Any]:
    return load_sam_app(REPO / "template.yaml").transformed


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resolver(template: dict[str, Any]) -> Resolver:
    resources = template.get("Resources", {})

    def get_att(logical: str, attr: str) -> str:
        if resources.get(logical, {}).get("Type") == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{STACK}-{logical.lower()}"
        return f"arn:aws:local:::{logical}.{attr}"

    return Resolver(template, {}, STACK, "us-east-1", ref=lambda logical: f"{STACK}-{logical.lower()}", get_att=get_att)


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(principal, statement) of every identity policy and bucket policy; a principal is a role's logical id."""
    out = []
    for name, res in template.get("Resources", {}).items():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                out += [(name, st) for st in _listify(policy.get("PolicyDocument", {}).get("Statement", []))]
        elif res.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = [r.get("Ref", json.dumps(r)) if isinstance(r, dict) else r for r in props.get("Roles", [])]
            for st in _listify(props.get("PolicyDocument", {}).get("Statement", [])):
                out += [(role, st) for role in roles or [name]]
        elif res.get("Type") == "AWS::S3::BucketPolicy":
            for st in _listify(props.get("PolicyDocument", {}).get("Statement", [])):
                out.append((f"{name} principal {json.dumps(st.get('Principal'))}", st))
    return out


def object_writers(template: dict[str, Any], bucket: str, key: str) -> set[str]:
    """The principals allowed s3:PutObject on ``s3://<bucket's physical name>/key``."""
    resolver = _resolver(template)
    arn = f"arn:aws:s3:::{STACK}-{bucket.lower()}/{key}"
    writers = set()
    for principal, st in _statements(template):
        if st.get("Effect") != "Allow":
            continue
        if "NotAction" in st or "NotResource" in st:  # grants by exclusion: counted as writing everywhere
            writers.add(principal)
            continue
        actions = [str(a) for a in _listify(resolver.resolve(st.get("Action", [])))]
        if not any(fnmatch.fnmatchcase("s3:putobject", a.lower()) for a in actions):
            continue
        resources = [str(r) for r in _listify(resolver.resolve(st.get("Resource", [])))]
        if any(fnmatch.fnmatchcase(arn, r) for r in resources):
            writers.add(principal)
    return writers


def test_only_the_code_publisher_puts_training_code() -> None:
    template = _transformed()
    assert object_writers(template, "ArtifactBucket", "code/training/sourcedir.tar.gz") == {"TrainingCodePublisherRole"}
    for key in ("code/training/other.tar.gz", "code/anything", "code/"):
        assert object_writers(template, "ArtifactBucket", key) <= {"TrainingCodePublisherRole"}, key


@pytest.mark.parametrize(
    "key",
    [
        "pipeline/checkpoints/exec1/run/weights/last.pt",  # a resumed job unpickles it
        "pipeline/training/job-1/output/model.tar.gz",  # the champion's best.pt (warm starts)
        "loupe-training/exec1/Prepare/output/weights/weights.pt",  # the training job's weights channel
        "loupe-training/exec1/Evaluate/output/package/model.tar.gz",
    ],
)
def test_only_the_sagemaker_jobs_put_pipeline_objects(key: str) -> None:
    assert object_writers(_transformed(), "ArtifactBucket", key) == {"SageMakerExecutionRole"}


def test_no_role_may_put_objects_anywhere_in_the_artifact_bucket() -> None:
    assert object_writers(_transformed(), "ArtifactBucket", "some/new/prefix/x") == set()


def test_the_rule_catches_broad_writers() -> None:
    bad = {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "Crud": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {
                            "PolicyDocument": {
                                "Statement": [
                                    {"Effect": "Allow", "Action": "s3:*", "Resource": {"Fn::Sub": "${Bucket.Arn}/*"}}
                                ]
                            }
                        }
                    ]
                },
            },
            "Prefix": {"Type": "AWS::IAM::Role", "Properties": {}},
            "PrefixPolicy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "Roles": [{"Ref": "Prefix"}],
                    "PolicyDocument": {
                        "Statement": [
                            {"Effect": "Allow", "Action": ["s3:Put*"], "Resource": {"Fn::Sub": "${Bucket.Arn}/co*"}}
                        ]
                    },
                },
            },
            "Reader": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {
                            "PolicyDocument": {
                                "Statement": [
                                    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                                    {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"},
                                    {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
                                ]
                            }
                        }
                    ]
                },
            },
            "Elsewhere": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {
                            "PolicyDocument": {
                                "Statement": [
                                    {
                                        "Effect": "Allow",
                                        "Action": "s3:PutObject",
                                        "Resource": {"Fn::Sub": "${Bucket.Arn}/datasets/*"},
                                    }
                                ]
                            }
                        }
                    ]
                },
            },
        }
    }
    assert object_writers(bad, "Bucket", "code/training/sourcedir.tar.gz") == {"Crud", "Prefix", "Reader"}
    assert object_writers(bad, "Bucket", "datasets/v1/dataset.json") == {"Crud", "Reader", "Elsewhere"}
