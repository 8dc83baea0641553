"""The model registry as the console shows and changes it: the packages of Loupe's group, and an approver's decision.

An approval is one ``UpdateModelPackage`` call with ``ModelApprovalStatus`` and an ``ApprovalDescription`` that names
the approver; SageMaker then emits "SageMaker Model Package State Change", which starts the edge deployment
(``functions/model_package_events``) exactly as an approval made anywhere else does.

Field agreement: a package that passed the gate runs beside production on the fleet (shadow mode,
``loupe.deployment.shadow``) and the devices' counters add up in the deployments table. The listing shows them next to
the gate's test-split numbers, and a decision writes them into the package's ``CustomerMetadataProperties`` (the same
``UpdateModelPackage`` call), so the registry keeps what the approver saw.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from loupe.edge_metrics import agreement, field_agreement_metadata

# CreateModelPackage's ApprovalDescription: at most 1024 characters (SageMaker API Reference, UpdateModelPackage)
APPROVAL_DESCRIPTION_MAX = 1024
# a package is named in a route by its version in the group ("7") or its full ARN's last part ("<group>/7")
_VERSION = re.compile(r"^[0-9]{1,9}$")
# the gate's report, as training/pipeline.py registers it in CustomerMetadataProperties
GATE_KEYS = ("test_map50", "champion_map50", "champion_bar", "test_map50_ci90", "gate_reason", "dataset_version")


# CustomerMetadataProperties (botocore's SageMaker model, CustomerMetadataMap): at most 50 entries, keys of 1-128 and
# values of 1-256 characters from letters, digits, spaces and _.:/=+-@
METADATA_MAX_ENTRIES = 50
_METADATA_PUNCTUATION = frozenset("_.:/=+-@")


def metadata_text(text: str, longest: int) -> bool:
    r"""``text`` is a CustomerMetadataProperties key (``longest`` 128) or value (256) SageMaker accepts: its pattern
    ``([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)``, which Python's ``re`` cannot compile, checked by Unicode category."""
    return 0 < len(text) <= longest and all(
        unicodedata.category(c)[0] in "LZN" or c in _METADATA_PUNCTUATION for c in text
    )


FIELD_EVIDENCE_AT = "field_evidence_at"


class SageMakerRegistry(Protocol):
    def list_model_packages(self, **kwargs: Any) -> dict[str, Any]: ...

    def describe_model_package(self, **kwargs: Any) -> dict[str, Any]: ...

    def update_model_package(self, **kwargs: Any) -> dict[str, Any]: ...


class ShadowEvidence(Protocol):
    """What the deployments table knows of a package's shadow (``loupe.deployment.store.DeploymentsStore``)."""

    def package_shadow(self, package_arn: str) -> dict[str, Any] | None: ...

    def shadow_totals(self, version: str) -> dict[str, Any]: ...


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


def shadow_summary(store: ShadowEvidence, package_arn: str) -> dict[str, Any] | None:
    """The package's shadow counters over the fleet (``DeploymentsStore.shadow_totals``); None if it never ran as
    a shadow."""
    shadow = store.package_shadow(package_arn)
    if not shadow or not shadow.get("model_version"):
        return None
    return {**store.shadow_totals(str(shadow["model_version"])), "thing_group": shadow.get("thing_group", "")}


def field_agreement(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the Models page shows beside the gate's numbers: frames compared, devices, the candidate's errors,
    its disagreements with production by kind, and the frame-weighted ratios (``loupe.edge_metrics.agreement``)."""
    if summary is None:
        return None
    totals = summary.get("totals") or {}
    devices = summary.get("devices") or {}
    ends = [str(d.get("last_window_end")) for d in devices.values() if d.get("last_window_end")]
    return {
        "model_version": summary.get("version", ""),
        "thing_group": summary.get("thing_group", ""),
        "devices": len(devices),
        "frames": int(totals.get("frames", 0)),
        "production_frames": int(totals.get("production_frames", 0)),
        "errors": int(totals.get("errors", 0)),
        "missed_defects": int(totals.get("verdict_ng_ok", 0)),  # production NG, candidate OK
        "false_alarms": int(totals.get("verdict_ok_ng", 0)),  # production OK, candidate NG
        **agreement(totals),
        "last_window_end": max(ends) if ends else None,
    }


def list_packages(
    sm: SageMakerRegistry, group: str, limit: int = 50, store: ShadowEvidence | None = None
) -> list[dict[str, Any]]:
    """The group's newest ``limit`` packages, newest first, with approval status, the gate's numbers and (with
    ``store``) the field agreement of those that ran beside production (``field_agreement``, else None)."""
    listed = sm.list_model_packages(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
    )
    out = []
    for s in listed.get("ModelPackageSummaryList", []):
        summary = _summary(sm.describe_model_package(ModelPackageName=s["ModelPackageArn"]))
        if store is not None:
            summary["field_agreement"] = field_agreement(shadow_summary(store, summary["arn"]))
        out.append(summary)
    return sorted(out, key=lambda p: int(p["version"] or 0), reverse=True)


def evidence_metadata(
    summary: dict[str, Any] | None, existing: dict[str, Any], now: datetime | None = None
) -> dict[str, str]:
    """The field agreement at the moment of a decision as ``CustomerMetadataProperties`` entries: the candidate's
    counters (``loupe.edge_metrics.field_agreement_metadata``; zeros for a package that never ran beside production)
    and when they were read. Entries past the map's 50 (with the package's own) are left out, last first; an entry
    the registry would refuse is left out too (none is expected: every value is a number or a UTC time)."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    wanted = {**field_agreement_metadata(summary or {}), FIELD_EVIDENCE_AT: when}
    room = METADATA_MAX_ENTRIES - len([k for k in existing if k not in wanted])
    out: dict[str, str] = {}
    for key, value in wanted.items():
        if len(out) >= room:
            break
        if metadata_text(key, 128) and metadata_text(value, 256):
            out[key] = value
    return out


def describe(sm: SageMakerRegistry, group: str, package: str) -> dict[str, Any]:
    """The description of the package of that version in ``group`` (NotFound for anything else)."""
    return _package(sm, group, package)


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


def decide(
    sm: SageMakerRegistry,
    group: str,
    package: str,
    decision: Decision,
    approver: str,
    store: ShadowEvidence | None = None,
) -> dict[str, Any]:
    """Record an approver's decision on a package of ``group``; the description names who decided and why. With
    ``store``, the same call writes the package's field agreement at this moment into its metadata
    (:func:`evidence_metadata`), sent with the package's other metadata entries so that none is lost.

    NotFound: not a package of the group. Conflict: the package already has that status, or is not a completed
    package (SageMaker registers a package's approval only once it is Completed)."""
    desc = _package(sm, group, package)
    if desc.get("ModelPackageStatus") not in (None, "Completed"):
        raise Conflict(f"model package {package} is {desc.get('ModelPackageStatus')}, not Completed")
    if desc.get("ModelApprovalStatus") == decision.decision:
        raise Conflict(f"model package {package} is already {decision.decision}")
    text = f"{decision.decision} by {approver}" + (f": {decision.reason}" if decision.reason else "")
    update: dict[str, Any] = {
        "ModelPackageArn": desc["ModelPackageArn"],
        "ModelApprovalStatus": decision.decision,
        "ApprovalDescription": text[:APPROVAL_DESCRIPTION_MAX],
    }
    out: dict[str, Any] = {
        "arn": desc["ModelPackageArn"],
        "version": desc.get("ModelPackageVersion"),
        "approval": decision.decision,
        "approval_description": text[:APPROVAL_DESCRIPTION_MAX],
    }
    if store is not None:
        summary = shadow_summary(store, desc["ModelPackageArn"])
        existing = dict(desc.get("CustomerMetadataProperties") or {})
        evidence = evidence_metadata(summary, existing)
        if evidence:
            # the whole map, ours over the package's own: the registered digests and the gate's report stay whether
            # the service adds the given keys (it has ...ToRemove for removals) or replaced the map
            update["CustomerMetadataProperties"] = {**existing, **evidence}
        out["field_agreement"] = field_agreement(summary)
        out["recorded_metadata"] = evidence
    sm.update_model_package(**update)
    return out
