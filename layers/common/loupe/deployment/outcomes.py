"""Per-device outcomes of one deployment: COMPLETED (deployed *and* serving the new model), FAILED, CANCELED,
TIMED_OUT, NOT_SERVING (deployed, not serving at the deadline) or PENDING; and the run's overall outcome."""

from __future__ import annotations

import time
from typing import Any

from loupe import greengrass as gg_mod
from loupe.aws_clients import GreengrassV2, IoT
from loupe.deployment.packages import DEVICES_IN_STATE
from loupe.deployment.store import DeploymentsStore, utc_now

SUCCEEDED = {"SUCCEEDED", "COMPLETED"}
FINAL_FAILED = {"FAILED", "REJECTED", "CANCELED", "TIMED_OUT"}
JOB_PAGE = 250  # ListJobExecutionsForJob's largest page
REASONS_FETCHED = 20  # failed devices whose Greengrass reason is looked up (ListEffectiveDeployments) per run
_JOB_FINAL = {"SUCCEEDED": "COMPLETED", "FAILED": "FAILED", "REJECTED": "FAILED", "CANCELED": "CANCELED"}
_JOB_FINAL |= {"TIMED_OUT": "TIMED_OUT", "REMOVED": "CANCELED"}
_WAITING_TO_SERVE = "deployed, waiting for the device to report serving"


def device_outcomes(
    gg: GreengrassV2,
    deployment_id: str,
    devices: list[str],
    deadline: float,
    now: float | None = None,
    store: DeploymentsStore | None = None,
    model_version: str = "",
) -> dict[str, Any]:
    """Per-device outcome of one deployment, one ListEffectiveDeployments per device (small fleets).

    With ``store`` (what each device last reported serving, from its health messages) a device is COMPLETED only
    once Greengrass reports the deployment done *and* the device serves ``model_version``; done but silent until
    the deadline is NOT_SERVING ("deployed, not serving")."""
    now = time.time() if now is None else now
    result: dict[str, dict[str, Any]] = {}
    for thing in devices:
        result[thing] = _device_outcome(gg, deployment_id, thing)
        if store is not None and model_version and result[thing]["status"] == "COMPLETED":
            reported = store.serving_version(thing)
            if reported != model_version:
                result[thing] = _waiting_to_serve(reported)
    _time_out(result, now >= deadline, model_version)
    counts = _counts(result)
    return {
        "done": "PENDING" not in counts,
        "devices": result,
        "counts": counts,
        "all_completed": counts.get("COMPLETED", 0) == len(devices),
    }


def job_outcomes(
    iot: IoT,
    gg: GreengrassV2,
    deployment: dict[str, Any],
    deadline: float,
    store: DeploymentsStore | None = None,
    now: float | None = None,
    expected: int = 0,
) -> dict[str, Any]:
    """Per-device outcomes for a fleet of any size, from the deployment's IoT job (Greengrass runs each deployment
    as one; ListJobExecutionsForJob pages 250 devices a call) and, for the devices done, what they report serving
    (BatchGetItem, 100 a call). Nothing here is one call per device per poll.

    A target has no job execution until the job's rollout reaches it, so the executions listed so far are not the
    fleet: the run is not done while DescribeJob's ``jobProcessDetails.processingTargets`` is set ("null after the
    job execution has finished rolling out to all the target devices", IoT API reference, *JobProcessDetails*).
    At the deadline the targets the rollout has not reached (``expected``, the thing group's size when the run
    resolved it, less the executions listed; at least one while the job still rolls out) count as NOT_REACHED.

    While the rollout goes on the result is counts only; when it is done, every device's outcome is written to
    the deployments table (``DEPLOYMENT#<id>`` / ``DEVICE#<thing>``) and the workflow state keeps at most
    ``DEVICES_IN_STATE`` of them (the ones that did not complete first), so the state stays far below 256 KB."""
    now = time.time() if now is None else now
    calls = {"DescribeJob": 1, "ListJobExecutionsForJob": 0, "BatchGetItem": 0, "ListEffectiveDeployments": 0}
    job = iot.describe_job(jobId=deployment["iot_job_id"]).get("job") or {}
    rolling_out = bool((job.get("jobProcessDetails") or {}).get("processingTargets"))
    result: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        kwargs: dict[str, Any] = {"jobId": deployment["iot_job_id"], "maxResults": JOB_PAGE}
        if token:
            kwargs["nextToken"] = token
        page = iot.list_job_executions_for_job(**kwargs)
        calls["ListJobExecutionsForJob"] += 1
        for row in page.get("executionSummaries", []):
            thing = str(row.get("thingArn", "")).rsplit("/", 1)[-1]
            status = (row.get("jobExecutionSummary") or {}).get("status", "")
            final = _JOB_FINAL.get(status)
            result[thing] = {"status": final or "PENDING", "reason": "", "detail": status}
        token = page.get("nextToken")
        if not token:
            break
    want = str(deployment.get("model_version") or "")
    done_things = sorted(t for t, r in result.items() if r["status"] == "COMPLETED")
    if store is not None and want and done_things:
        reported = store.serving_versions(done_things)
        calls["BatchGetItem"] += -(-len(done_things) // 100)
        for thing in done_things:
            if reported.get(thing) != want:
                result[thing] = _waiting_to_serve(reported.get(thing))
    past_deadline = now >= deadline
    _time_out(result, past_deadline, want)
    counts = _counts(result)
    if rolling_out and past_deadline:
        counts["NOT_REACHED"] = max(1, expected - len(result))
    done = "PENDING" not in counts and (past_deadline or not rolling_out)
    total = sum(counts.values())
    out: dict[str, Any] = {
        "done": done,
        "rolling_out": rolling_out,
        "counts": counts,
        "all_completed": bool(total) and counts.get("COMPLETED", 0) == total,
    }
    if done:
        failed = sorted(t for t, r in result.items() if r["status"] == "FAILED")[:REASONS_FETCHED]
        for thing in failed:
            found = _device_outcome(gg, deployment["deployment_id"], thing)
            calls["ListEffectiveDeployments"] += 1
            if found.get("reason"):
                result[thing]["reason"] = found["reason"]
        if store is not None:
            updated = utc_now()
            store.put_device_outcomes(
                deployment["deployment_id"],
                (
                    (
                        thing,
                        {
                            "status": r["status"],
                            "reason": r.get("reason") or "",
                            "model_version": want,
                            "updated": updated,
                        },
                    )
                    for thing, r in result.items()
                ),
            )
        shown = sorted(result, key=lambda t: (result[t]["status"] == "COMPLETED", t))[:DEVICES_IN_STATE]
        out["devices"] = {t: {k: v for k, v in result[t].items() if k in ("status", "reason")} for t in shown}
        out["devices_total"] = len(result)
    out["calls"] = calls
    return out


def overall(outcomes: dict[str, Any]) -> tuple[str, str]:
    counts = outcomes.get("counts") or {}
    total = sum(counts.values())
    done = counts.get("COMPLETED", 0)
    if not total:
        return "FAILED", "no device reported an outcome: the deployment reached none of the thing group's devices"
    if done == total:
        return "COMPLETED", f"all {total} devices run the new components"
    parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    if counts.get("NOT_SERVING"):
        return "DEPLOYED_NOT_SERVING", f"deployed, not serving: {parts}"
    return ("PARTIAL" if done else "FAILED"), parts


def _waiting_to_serve(reported: str | None) -> dict[str, Any]:
    return {"status": "PENDING", "reason": "", "detail": _WAITING_TO_SERVE, "deployed": True, "serving": reported or ""}


def _time_out(result: dict[str, dict[str, Any]], past_deadline: bool, model_version: str) -> None:
    """At the deadline every pending device gets its final word: NOT_SERVING when deployed, else TIMED_OUT."""
    if not past_deadline:
        return
    for thing in [t for t, r in result.items() if r["status"] == "PENDING"]:
        r = result[thing]
        if r.get("deployed"):
            result[thing] = {
                "status": "NOT_SERVING",
                "reason": f"deployed, not serving: {thing} reported serving {r.get('serving') or 'nothing'}, "
                f"not model {model_version}, before the deployment timeout",
                "detail": "deployed",
            }
        else:
            result[thing] = {
                "status": "TIMED_OUT",
                "reason": f"no result from {thing} before the deployment timeout (device offline or slow)",
                "detail": r.get("detail", ""),
            }


def _counts(result: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in result.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


def _device_outcome(gg: GreengrassV2, deployment_id: str, thing: str) -> dict[str, Any]:
    try:
        entries = list(
            gg_mod.paged(gg, "list_effective_deployments", "effectiveDeployments", coreDeviceThingName=thing)
        )
    except Exception as exc:  # an unknown core device has never connected: still pending
        return {"status": "PENDING", "reason": "", "detail": f"not reachable: {type(exc).__name__}"}
    for entry in entries:
        if entry.get("deploymentId") != deployment_id:
            continue
        status = entry.get("coreDeviceExecutionStatus", "")
        reason = entry.get("reason") or ""
        details = entry.get("statusDetails") or {}
        if details.get("errorStack"):
            reason = f"{reason} [{' > '.join(details['errorStack'])}]".strip()
        if status in SUCCEEDED:
            return {"status": "COMPLETED", "reason": reason, "detail": status}
        if status in FINAL_FAILED:
            mapped = {"REJECTED": "FAILED"}.get(status, status)
            return {"status": mapped, "reason": reason or status, "detail": status}
        return {"status": "PENDING", "reason": "", "detail": status}
    return {"status": "PENDING", "reason": "", "detail": "not notified yet"}
