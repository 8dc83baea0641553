"""The labeling app's resources in template.yaml: its table is billed per request, recoverable and encrypted like the
others; the console function writes only that table (and reads its queue index), presigns only raw/ images, writes
only under labeling/, and reads for the Fleet and Loop pages only the items and objects those name; the routes
exist. Each rule is also run on a copy that breaks it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from loupe_local.template import load_yaml

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
ROUTES = {
    ("GET", "/labeling/tasks/next"),
    ("POST", "/labeling/tasks/{assignmentId}"),
    ("POST", "/labeling/tasks/{assignmentId}/decline"),
    ("GET", "/review/next"),
    ("POST", "/review/{itemId}"),
    ("GET", "/fleet"),
    ("GET", "/loop"),
}


# what a labeling run's manifest points to: uploads and ingest's normalized copies (loupe.ingest.NORMALIZED_PREFIX)
IMAGE_PREFIXES = [{"Fn::Sub": "${RawBucket.Arn}/raw/*"}, {"Fn::Sub": "${RawBucket.Arn}/normalized/*"}]
# the Loop page reads each dataset version's dataset.json, nothing else of the artifacts
DATASET_DOCS = {"Fn::Sub": "${ArtifactBucket.Arn}/datasets/*/dataset.json"}
# the Models page reads the evaluation step's output (details.json, samples/) and presigns its sample frames
EVALUATION_OUTPUT = {"Fn::Sub": "${ArtifactBucket.Arn}/loupe-training/*/Evaluate/output/evaluation/*"}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def problems(template: dict[str, Any]) -> list[str]:
    found = []
    res = template["Resources"]
    table = res["LabelingTasksTable"]["Properties"]
    if table.get("BillingMode") != "PAY_PER_REQUEST":
        found.append("table not PAY_PER_REQUEST")
    if table.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is not True:
        found.append("table without PITR")
    if table.get("SSESpecification", {}).get("KMSMasterKeyId") != {"Ref": "TablesKey"}:
        found.append("table not encrypted with the tables' key")
    fn = res["ConsoleApiFunction"]["Properties"]
    for policy in fn["Policies"]:
        for st in _list(policy.get("Statement", [])) if isinstance(policy, dict) else []:
            actions = [str(a) for a in _list(st["Action"])]
            where = json.dumps(st["Resource"])
            # the shadow's field agreement (issue 23) is read from the deployments table: reads only, and only its
            # PACKAGE#/SHADOW# items
            field_reads = (
                "DeploymentsTable" in where
                and set(actions) <= {"dynamodb:GetItem", "dynamodb:Query"}
                and st.get("Condition")
                == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["PACKAGE#*", "SHADOW#*"]}}
            )
            # the Fleet page: the devices' health records, the group's run history and its canary, reads only
            fleet_reads = (
                "DeploymentsTable" in where
                and set(actions) <= {"dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query"}
                and st.get("Condition")
                == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["DEVICE#*", "TARGET#*"]}}
            )
            # the Loop page: the ledger's counts and job records, reads only, on the ledger and its status index
            ledger_reads = set(actions) <= {"dynamodb:Query", "dynamodb:Scan"} and st["Resource"] == [
                {"Fn::GetAtt": ["LedgerTable", "Arn"]},
                {"Fn::Sub": "${LedgerTable.Arn}/index/status-index"},
            ]
            if (
                any(a.startswith("dynamodb:") for a in actions)
                and not (field_reads or fleet_reads or ledger_reads)
                and (st["Resource"] == "*" or "LabelingTasksTable" not in where or "LedgerTable" in where)
            ):
                found.append(f"{st.get('Sid')}: DynamoDB beyond the labeling table")
            if "s3:GetObject" in actions and where not in (
                json.dumps(IMAGE_PREFIXES),
                json.dumps(DATASET_DOCS),
                json.dumps(EVALUATION_OUTPUT),
            ):
                found.append(f"{st.get('Sid')}: reads objects beyond the images (raw/, normalized/)")
            if "s3:PutObject" in actions and where != json.dumps({"Fn::Sub": "${ArtifactBucket.Arn}/labeling/*"}):
                found.append(f"{st.get('Sid')}: writes objects beyond labeling/")
            if st["Resource"] == "*" and not set(actions) <= {
                "states:SendTaskSuccess",
                "states:SendTaskFailure",
                "sagemaker:ListModelPackages",
                "greengrass:ListCoreDevices",
            }:
                found.append(f"{st.get('Sid')}: '*' for actions that have a resource type")
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"])
        for e in fn["Events"].values()
        if e.get("Type") == "HttpApi"
    }
    found += [f"route {m} {p} missing" for m, p in sorted(ROUTES - routes)]
    if fn.get("Environment", {}).get("Variables", {}).get("LABELING_TASKS_TABLE") != {"Ref": "LabelingTasksTable"}:
        found.append("the function is not told its table")
    return found


def test_the_template_holds() -> None:
    assert problems(load_yaml(TEMPLATE)) == []


def _statement(template: dict[str, Any], sid: str) -> dict[str, Any]:
    for policy in template["Resources"]["ConsoleApiFunction"]["Properties"]["Policies"]:
        for st in _list(policy.get("Statement", [])):
            if st.get("Sid") == sid:
                return dict(st)
    raise AssertionError(sid)


@pytest.mark.parametrize("how", ["no-pitr", "whole-account-dynamodb", "whole-raw-bucket", "star-put", "no-route"])
def test_each_rule_catches_its_break(how: str) -> None:
    template = copy.deepcopy(load_yaml(TEMPLATE))
    res = template["Resources"]
    if how == "no-pitr":
        res["LabelingTasksTable"]["Properties"]["PointInTimeRecoverySpecification"] = {}
    elif how == "whole-account-dynamodb":
        assert _statement(template, "LabelingTasksRead")  # the statement the break changes exists
        for policy in res["ConsoleApiFunction"]["Properties"]["Policies"]:
            for st in _list(policy.get("Statement", [])):
                if st.get("Sid") == "LabelingTasksRead":
                    st["Resource"] = "*"
    elif how in ("whole-raw-bucket", "star-put"):
        sid = "PresignRawImages" if how == "whole-raw-bucket" else "WriteLabelingOutput"
        for policy in res["ConsoleApiFunction"]["Properties"]["Policies"]:
            for st in _list(policy.get("Statement", [])):
                if st.get("Sid") == sid:
                    st["Resource"] = {"Fn::Sub": "${RawBucket.Arn}/*"} if how == "whole-raw-bucket" else "*"
    elif how == "no-route":
        del res["ConsoleApiFunction"]["Properties"]["Events"]["NextReview"]
    assert problems(template), how


def test_the_presigned_images_cover_every_prefix_a_manifest_points_to() -> None:
    """A rotated or non-JPEG/PNG upload is labeled from its normalized copy: with only raw/ granted, the presigned
    GET of such an image was denied in the cloud (the local AWS does not enforce IAM) and the labeler saw no image."""
    from loupe.eventbridge import RAW_PREFIX
    from loupe.ingest import NORMALIZED_PREFIX

    granted = [r["Fn::Sub"] for r in _list(_statement(load_yaml(TEMPLATE), "PresignRawImages")["Resource"])]
    for prefix in (RAW_PREFIX, NORMALIZED_PREFIX):
        assert "${RawBucket.Arn}/" + prefix + "*" in granted, prefix
