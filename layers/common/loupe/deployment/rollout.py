"""One rollout at a time per thing group, decided with the model registry as it is when the run gets its turn;
and what a rejection goes back to."""

from __future__ import annotations

from typing import Any

from loupe.aws_clients import SageMakerRegistry
from loupe.deployment.document import poll_interval
from loupe.deployment.packages import Package, approved_packages, describe_package
from loupe.deployment.shadow import still_due
from loupe.deployment.store import DeploymentsStore


def lock_and_decide(
    sm: SageMakerRegistry, store: DeploymentsStore, state: dict[str, Any], now: float | None = None
) -> dict[str, Any]:
    """Serialize rollouts to the thing group, then decide with the registry as it is *now*.

    Returns ``lock`` (``held``, ``wait_seconds``) and, once held, ``status``: ``ready``, ``superseded`` (an
    approval of a package older than the newest Approved one: the fleet serves the newest, whatever order the
    events came in) or ``nothing_to_deploy`` (the package is no longer Approved; for a ``shadow`` or ``end_shadow``
    run, :func:`loupe.deployment.shadow.still_due`)."""
    group = state["thing_group"]
    run_id = state.get("run_id") or "manual"
    timeout = int(state.get("timeout_seconds") or 900)
    hold = 2 * timeout + 900  # a run that died (stopped execution) frees the group after this
    wait = poll_interval(timeout)  # as often as a rollout's own status checks: 1 to 60 s
    if not store.acquire_lock(group, run_id, hold, now):
        return {"lock": {"held": False, "wait_seconds": wait, "holder": store.lock_holder(group)}}
    package = Package(**state["package"])
    out: dict[str, Any] = {"lock": {"held": True, "wait_seconds": wait}, "status": "ready", "reason": ""}
    current = describe_package(sm, package.arn)
    if current.status != "Approved":
        return {**out, "status": "nothing_to_deploy", "reason": f"package {package.version} is now {current.status}"}
    if state.get("mode") in ("shadow", "end_shadow"):
        reason = still_due(sm, store, state)
        return {**out, "status": "nothing_to_deploy", "reason": reason} if reason else out
    if state.get("mode", "approved") == "approved":
        newest = next(iter(approved_packages(sm, package.group)), None)
        if (
            newest
            and newest["ModelPackageArn"] != package.arn
            and int(newest.get("ModelPackageVersion") or 0) > int(package.version)
        ):
            return {
                **out,
                "status": "superseded",
                "reason": f"package {newest.get('ModelPackageVersion')} is a newer Approved package; the late "
                f"approval of package {package.version} does not replace it",
            }
    return out


def previous_package(
    sm: SageMakerRegistry, store: DeploymentsStore, thing_group: str, group: str, rejected: str
) -> str | None:
    """What to go back to when ``rejected`` is rejected: the newest package that ran on the thing group before
    and is still Approved; else the newest Approved package of the group."""
    for arn in store.deployed_history(thing_group):
        if arn == rejected:
            continue
        try:
            status = sm.describe_model_package(ModelPackageName=arn).get("ModelApprovalStatus")
        except Exception:  # noqa: BLE001, S112 - a deleted package is simply not a candidate
            continue
        if status == "Approved":
            return arn
    for summary in approved_packages(sm, group):
        if summary["ModelPackageArn"] != rejected:
            return str(summary["ModelPackageArn"])
    return None
