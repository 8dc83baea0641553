"""Model package state changes → edge deployment workflow runs: Approved deploys the package; Rejected (of what
the thing group runs or is rolling out) goes back to the previous Approved package; PendingManualApproval with the
gate passed runs the package beside production (shadow mode, :mod:`loupe.deployment.shadow`), and the rejection of
that candidate ends its shadow."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from loupe import eventbridge
from loupe.aws_clients import SageMakerRegistry, StepFunctions
from loupe.aws_errors import error_code
from loupe.deployment.clients import AwsClients
from loupe.deployment.errors import DeploymentError, PackageInvalid
from loupe.deployment.rollout import previous_package
from loupe.deployment.shadow import PENDING, shadow_reason
from loupe.deployment.store import DeploymentsStore
from loupe.settings import Settings


def run_name(kind: str, package_version: Any, key: str) -> str:
    """Execution name: unique per (package, status change), so a redelivered event starts nothing new."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{kind}-v{package_version}-{digest}"[:80]


def on_package_change(change: eventbridge.ModelPackageStateChange, cfg: Settings, aws: AwsClients) -> dict[str, Any]:
    """The handler's one call: a parsed state change of this stack's group → a run (or a reason for none).
    :class:`loupe.eventbridge.Ignored` for another group's package, before any AWS call."""
    group = cfg.model_package_group or ""
    eventbridge.check_package(change, group)
    if not cfg.edge_deployment_state_machine_arn or not cfg.thing_group_name:
        raise DeploymentError("missing configuration: EDGE_DEPLOYMENT_STATE_MACHINE_ARN, THING_GROUP_NAME")
    return on_package_event(
        change.detail.model_dump(by_alias=True),
        sm=aws.sagemaker,
        sfn=aws.stepfunctions,
        store=aws.store,
        state_machine_arn=cfg.edge_deployment_state_machine_arn,
        thing_group=cfg.thing_group_name,
        group_name=group,
    )


def on_package_event(
    detail: dict[str, Any],
    sm: SageMakerRegistry,
    sfn: StepFunctions,
    store: DeploymentsStore,
    state_machine_arn: str,
    thing_group: str,
    group_name: str,
) -> dict[str, Any]:
    """Approved → deploy this package; Rejected (the deployed one) → redeploy the previous Approved package;
    PendingManualApproval with the gate passed → run it beside production; Rejected (the shadowed one) → production
    alone again.

    Returns what was decided: ``started`` (with the execution), ``duplicate`` or ``ignored`` (with why)."""
    arn = detail.get("ModelPackageArn") or ""
    status = detail.get("ModelApprovalStatus") or ""
    group = detail.get("ModelPackageGroupName") or ""
    if not arn or not status:
        raise PackageInvalid("event detail has no ModelPackageArn / ModelApprovalStatus")
    if group_name and group != group_name:
        return {"action": "ignored", "reason": f"package group {group} is not {group_name}"}
    version = detail.get("ModelPackageVersion") or arn.rsplit("/", 1)[-1]
    changed = str(detail.get("LastModifiedTime") or detail.get("CreationTime") or "")
    request: dict[str, Any]
    if status == "Approved":
        request = {"package_arn": arn, "mode": "approved"}
        name = run_name("deploy", version, f"{arn}|Approved|{changed}")
    elif status == PENDING:
        refusal = shadow_reason(sm, arn)
        if refusal:
            return {"action": "ignored", "reason": f"package {version} is not shadowed: {refusal}"}
        request = {"package_arn": arn, "mode": "shadow"}
        name = run_name("shadow", version, f"{arn}|{PENDING}|{changed}")
    elif status == "Rejected":
        targets = [store.current_target(thing_group, which) or {} for which in ("CURRENT", "PENDING")]
        if arn not in {t.get("package_arn") for t in targets}:
            shadowing = store.shadow_target(thing_group) or {}
            production = (targets[0] or {}).get("package_arn")
            if shadowing.get("package_arn") != arn or not production:
                return {
                    "action": "ignored",
                    "reason": f"package {version} is not what {thing_group} runs; nothing to undo",
                }
            request = {"package_arn": production, "mode": "end_shadow", "ended": arn}
            name = run_name("unshadow", version, f"{arn}|Rejected|{changed}")
            return _start(sfn, state_machine_arn, name, request)
        previous = previous_package(sm, store, thing_group, group, arn)
        name = run_name("rollback", version, f"{arn}|Rejected|{changed}")
        if previous:
            request = {"package_arn": previous, "mode": "rollback", "rejected": arn}
        else:
            request = {
                "package_arn": None,
                "mode": "rollback",
                "rejected": arn,
                "reason": f"package {version} was rejected and no other package is Approved",
            }
    else:
        return {"action": "ignored", "reason": f"status {status} needs no deployment"}
    return _start(sfn, state_machine_arn, name, request)


def _start(sfn: StepFunctions, state_machine_arn: str, name: str, request: dict[str, Any]) -> dict[str, Any]:
    try:
        out = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(request))
    except Exception as exc:
        if error_code(exc) != "ExecutionAlreadyExists":
            raise
        return {"action": "duplicate", "execution_name": name, "reason": "this status change was already handled"}
    return {"action": "started", "execution_arn": out["executionArn"], "execution_name": name, "request": request}
