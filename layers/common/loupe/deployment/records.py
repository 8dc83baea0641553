"""The run's record (package → deployment → per-device outcome, in the deployments table) and the SNS text the
state machine publishes from it."""

from __future__ import annotations

import json
import time
from typing import Any

from loupe import greengrass as gg_mod
from loupe.deployment import revision
from loupe.deployment.store import DEPLOYED_OUTCOMES, DeploymentsStore, utc_now


def record(store: DeploymentsStore, state: dict[str, Any], outcome: str, reason: str = "") -> dict[str, Any]:
    """Write the run's package → deployment → per-device outcome to the deployments table; returns a summary."""
    now = utc_now()
    package = state.get("package") or {}
    deployment = state.get("deployment") or {}
    devices = (state.get("outcomes") or {}).get("devices") or {}
    run_id = state.get("run_id") or "manual"
    summary = {
        "outcome": outcome,
        "reason": reason,
        "mode": state.get("mode", "approved"),
        "thing_group": state.get("thing_group", ""),
        "package_arn": package.get("arn", ""),
        "model_version": str(package.get("version", "")),
        "deployment_id": deployment.get("deployment_id", ""),
        "components": {k: (state.get(k) or {}).get("version", "") for k in ("model", "inference") if state.get(k)},
        "candidate": _candidate(state),
        "canary": _canary(state),
        "kept": list(deployment.get("kept") or []),
        "spooler": dict(deployment.get("spooler") or {}),
        "ipc": dict(deployment.get("ipc") or {}),
        "devices": {t: {"status": d["status"], "reason": d.get("reason", "")} for t, d in devices.items()},
        "devices_total": int((state.get("outcomes") or {}).get("devices_total") or len(devices)),
        "run_id": run_id,
        "finished": now,
        "finished_epoch": f"{time.time():.3f}",
    }
    store.put_run(summary, now)
    if summary["deployment_id"]:
        for thing, d in summary["devices"].items():
            store.put_device_outcome(
                summary["deployment_id"],
                thing,
                status=d["status"],
                reason=d["reason"] or "",
                package_arn=summary["package_arn"],
                model_version=summary["model_version"],
                updated=now,
            )
    if outcome in DEPLOYED_OUTCOMES and summary["package_arn"]:
        store.mark_target(summary["thing_group"], package, summary["deployment_id"], run_id)
    if summary["deployment_id"]:
        store.clear_pending(summary["thing_group"], summary["deployment_id"])
    _shadow_after(store, summary)
    if (state.get("lock") or {}).get("held"):
        store.release_lock(summary["thing_group"], run_id)
    summary["subject"] = subject(summary)
    summary["message"] = message(summary)
    return summary


def _canary(state: dict[str, Any]) -> dict[str, Any]:
    """An approval's canary: its cohort, window and verdict with the numbers (empty for a run without one)."""
    canary = state.get("canary") or {}
    if not canary.get("cohort"):
        return {}
    result = canary.get("verdict") or {}
    return {
        "group": canary.get("group", ""),
        "cohort": list(canary.get("cohort") or []),
        "rest": list(canary.get("rest") or []),
        "champion_version": canary.get("champion_version", ""),
        "challenger_version": canary.get("challenger_version", ""),
        "ended": canary.get("ended", ""),
        "verdict": result.get("verdict", ""),
        "reasons": list(result.get("reasons") or []),
        "window": canary.get("window") or {},
        "labels": result.get("labels") or {},
        "held": bool(canary.get("hold")),
        "tests": [
            {k: t.get(k) for k in ("metric", "direction", "canary", "champion", "method", "p_value", "worse")}
            for t in result.get("tests") or []
        ],
    }


def _candidate(state: dict[str, Any]) -> dict[str, Any]:
    """A shadow run's candidate: its package, the model version it runs as, and on which frames."""
    candidate = state.get("candidate") or {}
    if not candidate:
        return {}
    shadow = state.get("shadow") or {}
    return {
        "package_arn": candidate.get("arn", ""),
        "package_version": str(candidate.get("version", "")),
        # the version devices report for it once published; before that (a run that ended early), its package's
        "model_version": str((shadow.get("model") or {}).get("model_version") or f"package {candidate.get('version')}"),
        "component_version": str((shadow.get("model") or {}).get("version") or ""),
        "every_nth_frame": int(shadow.get("every_nth_frame") or 0),
    }


def _shadow_after(store: DeploymentsStore, summary: dict[str, Any]) -> None:
    """The group's shadow after this run: a deployment without a candidate that reached devices ended it (its
    document reset ``/settings/shadow`` and dropped ``com.loupe.shadow``); a shadow deployment that reached none
    (rolled back, or never created) never started it."""
    group, deployed = summary["thing_group"], summary["outcome"] in DEPLOYED_OUTCOMES
    shadowing = store.shadow_target(group) if group else None
    if not shadowing:
        return
    mine = shadowing.get("run_id") == summary["run_id"]
    if (summary["mode"] != "shadow" and deployed) or (mine and not deployed):
        store.end_shadow(group, str(shadowing.get("deployment_id") or ""))


def subject(summary: dict[str, Any]) -> str:
    version = summary.get("model_version") or "-"
    candidate = summary.get("candidate") or {}
    if (summary.get("canary") or {}).get("verdict") and summary["outcome"] == "CANARY_ROLLED_BACK":
        return f"Loupe canary of model {version}: rolled back, model {summary['canary']['champion_version']} stays"[:99]
    if candidate:
        return f"Loupe shadow of model {candidate.get('model_version') or '-'} beside {version}: {summary['outcome']}"[
            :99
        ]
    return f"Loupe edge deployment of model {version}: {summary['outcome']}"[:99]


def message(summary: dict[str, Any]) -> str:
    lines = [
        f"Outcome: {summary['outcome']}" + (f" - {summary['reason']}" if summary.get("reason") else ""),
        f"Mode: {summary.get('mode')}",
        f"Package: {summary.get('package_arn') or '-'} (model version {summary.get('model_version') or '-'})",
        f"Thing group: {summary.get('thing_group')}",
        f"Deployment: {summary.get('deployment_id') or '-'}",
        f"Components: {json.dumps(summary.get('components') or {})}",
    ]
    candidate = summary.get("candidate") or {}
    if candidate:
        lines.append(
            f"Shadow: candidate package {candidate.get('package_arn')} (model {candidate.get('model_version') or '-'})"
            f" beside production on every {candidate.get('every_nth_frame') or '-'}th frame; only production's"
            " results count. Its field agreement is on the console's Models page until a person decides."
        )
    canary = summary.get("canary") or {}
    if canary:
        window = canary.get("window") or {}
        lines.append(
            f"Canary: model {canary.get('challenger_version')} on {', '.join(canary.get('cohort') or [])} beside model"
            f" {canary.get('champion_version')} on {', '.join(canary.get('rest') or []) or 'no other device'};"
            f" window ended: {canary.get('ended') or '-'}; verdict: {canary.get('verdict') or '-'}"
        )
        for who in ("challenger", "champion"):
            c = window.get(who) or {}
            if c:
                lines.append(
                    f"  {who}: {c.get('frames')} frames, {c.get('uncertain')} uncertain, {c.get('ng')} NG,"
                    f" {c.get('errors')} errors, latency p95 {c.get('latency_p95_ms')} ms"
                )
        for who, key in (("challenger", "canary"), ("champion", "champion")):
            lab = (canary.get("labels") or {}).get(key) or {}
            if lab:
                lines.append(
                    f"  {who} labeled: {lab.get('frames')} frames, {lab.get('true_positives')}/{lab.get('predicted')}"
                    f" boxes right (precision {lab.get('precision')}), NG calls correct"
                    f" {lab.get('ng_correct')}/{lab.get('ng_calls')}"
                )
        for reason in canary.get("reasons") or []:
            lines.append(f"  why: {reason}")
    if summary.get("kept"):
        lines.append(f"Other components kept in the deployment: {', '.join(summary['kept'])}")
    spool = summary.get("spooler") or {}
    if spool.get("storage") == "Disk":
        lines.append(
            f"Offline results: spooled on disk by the nucleus ({revision.DISK_SPOOLER} {spool.get('disk_spooler')}"
            f" on {gg_mod.NUCLEUS} {spool.get('nucleus')})" + (f"; {spool['reason']}" if spool.get("reason") else "")
        )
    elif spool:
        lines.append(f"WARNING offline results: in memory only - {spool.get('reason')}")
    ipc = summary.get("ipc") or {}
    if ipc and not ipc.get("interpolation"):
        lines.append(f"WARNING inference results: {ipc.get('reason')}")
    for thing, d in sorted((summary.get("devices") or {}).items()):
        lines.append(f"  {thing}: {d['status']}" + (f" - {d['reason']}" if d.get("reason") else ""))
    hidden = int(summary.get("devices_total") or 0) - len(summary.get("devices") or {})
    if hidden > 0:
        lines.append(f"  ... and {hidden} more devices: DEPLOYMENT#{summary.get('deployment_id')} in the table")
    return "\n".join(lines)


def error_message(cause: Any) -> str:
    """The message of a Lambda error as the state machine hands it over (a JSON string in ``Cause``)."""
    if isinstance(cause, str):
        try:
            doc = json.loads(cause)
        except ValueError:
            return cause[:1000]
        if isinstance(doc, dict):
            return str(doc.get("errorMessage") or doc)[:1000]
    return str(cause or "")[:1000]
