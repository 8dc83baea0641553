"""The model registry as the console shows and changes it: the packages of Loupe's group, and an approver's decision.

An approval is one ``UpdateModelPackage`` call with ``ModelApprovalStatus`` and an ``ApprovalDescription`` that names
the approver; SageMaker then emits "SageMaker Model Package State Change", which starts the edge deployment
(``functions/model_package_events``) exactly as an approval made anywhere else does.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

# CreateModelPackage's ApprovalDescription: at most 1024 characters (SageMaker API Reference, UpdateModelPackage)
APPROVAL_DESCRIPTION_MAX = 1024
# a package is named in a route by its version in the group ("7") or its full ARN's last part ("<group>/7")
_VERSION = re.compile(r"^[0-9]{1,9}$")
# the gate's report, as training/pipeline.py registers it in CustomerMetadataProperties
GATE_KEYS = ("test_map50", "champion_map50", "champion_bar", "test_map50_ci90", "gate_reason", "dataset_version")


class SageMakerRegistry(Protocol):
    def list_model_packages(self, **kwargs: Any) -> dict[str, Any]: ...

    def describe_model_package(self, **kwargs: Any) -> dict[str, Any]: ...

    def update_model_package(self, **kwargs: Any) -> dict[str, Any]: ...


class NotFound(Exception):
    """No such package in Loupe's group (HTTP 404)."""


class Conflict(Exception):
    """The package cannot take that decision now (HTTP 409)."""


class Decision(BaseModel):
    """The body of ``POST /models/{package}/approval``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Literal["Approved", "Rejected"]
    reason: str = Field("", max_length=512)


def _summary(desc: dict[str, Any]) -> dict[str, Any]:
    meta = dict(desc.get("CustomerMetadataProperties") or {})
    created = desc.get("CreationTime")
    return {
        "arn": desc["ModelPackageArn"],
        "version": desc.get("ModelPackageVersion"),
        "approval": desc.get("ModelApprovalStatus", ""),
        "status": desc.get("ModelPackageStatus", ""),
        "approval_description": desc.get("ApprovalDescription", ""),
        "created": created.isoformat() if isinstance(created, datetime) else created,
        "gate": {key: meta[key] for key in GATE_KEYS if key in meta},
    }


def list_packages(sm: SageMakerRegistry, group: str, limit: int = 50) -> list[dict[str, Any]]:
    """The group's newest ``limit`` packages, newest first, with approval status and the gate's numbers."""
    listed = sm.list_model_packages(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
    )
    out = [
        _summary(sm.describe_model_package(ModelPackageName=s["ModelPackageArn"]))
        for s in listed.get("ModelPackageSummaryList", [])
    ]
    return sorted(out, key=lambda p: int(p["version"] or 0), reverse=True)


def _package(sm: SageMakerRegistry, group: str, package: str) -> dict[str, Any]:
    """The description of the package of that version in ``group``; NotFound for anything else."""
    if not _VERSION.match(package):
        raise NotFound(f"{package!r} is not a model package version of {group} (a number such as 3)")
    kwargs: dict[str, Any] = {"ModelPackageGroupName": group, "MaxResults": 100}
    while True:
        listed = sm.list_model_packages(**kwargs)
        for summary in listed.get("ModelPackageSummaryList", []):
            arn = str(summary["ModelPackageArn"])
            if str(summary.get("ModelPackageVersion") or arn.rsplit("/", 1)[-1]) == str(int(package)):
                desc = sm.describe_model_package(ModelPackageName=arn)
                if desc.get("ModelPackageGroupName", group) == group:
                    return desc
        if not listed.get("NextToken"):
            raise NotFound(f"model package {package} is not in group {group}")
        kwargs["NextToken"] = listed["NextToken"]


def decide(sm: SageMakerRegistry, group: str, package: str, decision: Decision, approver: str) -> dict[str, Any]:
    """Record an approver's decision on a package of ``group``; the description names who decided and why.

    NotFound: not a package of the group. Conflict: the package already has that status, or is not a completed
    package (SageMaker registers a package's approval only once it is Completed)."""
    desc = _package(sm, group, package)
    if desc.get("ModelPackageStatus") not in (None, "Completed"):
        raise Conflict(f"model package {package} is {desc.get('ModelPackageStatus')}, not Completed")
    if desc.get("ModelApprovalStatus") == decision.decision:
        raise Conflict(f"model package {package} is already {decision.decision}")
    text = f"{decision.decision} by {approver}" + (f": {decision.reason}" if decision.reason else "")
    sm.update_model_package(
        ModelPackageArn=desc["ModelPackageArn"],
        ModelApprovalStatus=decision.decision,
        ApprovalDescription=text[:APPROVAL_DESCRIPTION_MAX],
    )
    return {
        "arn": desc["ModelPackageArn"],
        "version": desc.get("ModelPackageVersion"),
        "approval": decision.decision,
        "approval_description": text[:APPROVAL_DESCRIPTION_MAX],
    }
