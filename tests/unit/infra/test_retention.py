"""What holds Loupe's data outlives the stack: deleting it, or an update that replaces a resource, keeps labels,
images, models and history.

Each rule runs against the real template (must hold) and a known-bad sample (must be caught).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from loupe_local.template import load_yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"

# resources whose loss loses data nothing else holds
RETAINED = {
    "LedgerTable": "every image's status, labels, labeling job and task token",
    "DeploymentsTable": "which model went to which devices and how each fared",
    "LabelingTasksTable": "every labeler's answer and reviewer's decision (paid work) and the jobs' task tokens",
    "RawBucket": "the uploaded and edge-feedback images",
    "ArtifactBucket": "dataset versions, models, the feature store's offline records",
    "AccessLogBucket": "the access logs of the retained buckets",
    "LabelsFeatureGroup": "the catalog of the accepted labels",
    "ModelPackageGroup": "the registered models and their approval history",
}
# storage deleted with the stack, each with the reason it may be
DELETABLE = {
    "IdempotencyTable": "24 h idempotency records; the ledger's conditional put records an image once without them",
}
STORAGE_TYPES = {
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::SageMaker::FeatureGroup",
    "AWS::SageMaker::ModelPackageGroup",
    "AWS::KMS::Key",
}


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return load_yaml(TEMPLATE)["Resources"]


def _refs(value: Any) -> set[str]:
    """Logical ids a value refers to with Ref or Fn::GetAtt."""
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value))
    if not isinstance(value, dict):
        return set()
    out: set[str] = set()
    for key, inner in value.items():
        if key == "Ref" and isinstance(inner, str):
            out.add(inner)
        elif key == "Fn::GetAtt":
            out.add(inner[0] if isinstance(inner, list) else str(inner).split(".")[0])
        else:
            out |= _refs(inner)
    return out


def retention_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    for name in RETAINED:
        res = resources.get(name)
        if res is None:
            problems.append(f"{name}: missing")
            continue
        for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
            if res.get(policy) != "Retain":
                problems.append(f"{name}: {policy} is {res.get(policy)!r}, not Retain")
        if (
            res["Type"] == "AWS::DynamoDB::Table"
            and res.get("Properties", {}).get("DeletionProtectionEnabled") is not True
        ):
            problems.append(f"{name}: DeletionProtectionEnabled is not true")
    for name, res in resources.items():
        if res.get("Type") in STORAGE_TYPES - {"AWS::KMS::Key"} and name not in RETAINED and name not in DELETABLE:
            problems.append(f"{name}: holds data, and neither retained nor declared deletable with a reason")
    # a key that encrypts retained data must outlive it, or the retained copy cannot be read
    for name in RETAINED:
        for key in _refs(resources.get(name, {}).get("Properties", {})):
            if (
                resources.get(key, {}).get("Type") == "AWS::KMS::Key"
                and resources[key].get("DeletionPolicy") != "Retain"
            ):
                problems.append(f"{name}: its key {key} is not retained")
    return problems


def test_data_outlives_the_stack(resources) -> None:
    assert retention_problems(resources) == []


def test_deletable_storage_is_really_deleted_with_the_stack(resources) -> None:
    """The deletable ones say so explicitly (a decision, not an omission)."""
    for name in DELETABLE:
        assert resources[name].get("DeletionPolicy") == "Delete", name
        assert not resources[name].get("Properties", {}).get("DeletionProtectionEnabled"), name


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda r: r["LedgerTable"].pop("DeletionPolicy"), "LedgerTable: DeletionPolicy is None, not Retain"),
        (lambda r: r["RawBucket"].update(UpdateReplacePolicy="Delete"), "RawBucket: UpdateReplacePolicy is 'Delete'"),
        (
            lambda r: r["DeploymentsTable"]["Properties"].pop("DeletionProtectionEnabled"),
            "DeploymentsTable: DeletionProtectionEnabled is not true",
        ),
        (lambda r: r.update(NewTable={"Type": "AWS::DynamoDB::Table"}), "NewTable: holds data"),
        (lambda r: r["TablesKey"].pop("DeletionPolicy"), "LedgerTable: its key TablesKey is not retained"),
    ],
)
def test_retention_rule_catches(resources, mutate, problem: str) -> None:
    bad = copy.deepcopy(resources)
    mutate(bad)
    assert any(p.startswith(problem) for p in retention_problems(bad)), retention_problems(bad)


def test_tables_are_encrypted_with_the_stacks_customer_managed_key(resources) -> None:
    """The ledger holds labels and task tokens: its key is one whose policy this stack controls."""
    for name, res in resources.items():
        if res["Type"] != "AWS::DynamoDB::Table":
            continue
        sse = res["Properties"].get("SSESpecification", {})
        assert sse.get("SSEEnabled") is True and sse.get("SSEType") == "KMS", name
        assert sse.get("KMSMasterKeyId") == {"Ref": "TablesKey"}, name
        skips = res.get("Metadata", {}).get("checkov", {}).get("skip", [])
        assert "CKV_AWS_119" not in {s["id"] for s in skips}, f"{name}: a CMK needs no CKV_AWS_119 suppression"
    assert resources["TablesKey"]["Properties"]["EnableKeyRotation"] is True
