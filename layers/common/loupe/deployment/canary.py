"""The canary: an approved challenger serves a cohort of the fleet while the rest keeps the champion, for a window of
frames; then it goes to the whole fleet, or the cohort goes back to the champion, by itself.

Cohort. ``CanaryPercent`` of the fleet's devices (at least one; a fleet of one is its own cohort), chosen by a hash
of the run and the thing name (random, not the first devices of a list), *move* from the fleet's thing group to a
sibling group ``<fleet>-canary`` for the window and back after it. Moving, not adding: a core device in two thing
groups runs the combination of both groups' deployments, and the version requirements of one component across its
groups must agree (Greengrass developer guide, "Deploy AWS IoT Greengrass components to devices": core device
deployments; component dependency resolution), so a device in both groups asked for model N by one and N+1 by the
other would fail its deployment instead of serving the challenger. Deployments are continuous (same page): a core
device that joins a thing group later gets the group's deployment, so a device that joins the canary group gets the
canary's deployment, and one that comes back gets the fleet's. The canary's deployment is a revision of the fleet's
(the same components, only Loupe's change), and the health messages of the canary group's members are admitted as
the fleet's (:func:`loupe.edge_metrics.in_fleet`).

Window. Every device's health window adds what it served to ``MODEL#<version>`` counters
(:meth:`DeploymentsStore.add_model_window`). The start snapshots them; the window is what accrued since: the
challenger on the cohort, the champion on the rest. With no rest (a fleet of one), the champion's own history on
the cohort before the start is its control: a before/after comparison, weaker than two cohorts side by side. The
window ends when the cohort served ``CanaryWindowFrames`` frames, at its timeout, when the package stops being
Approved (a person rejected it), or when a person gives a verdict (``TARGET#<group>`` / ``CANARY`` ``override``).

Verdict: :func:`loupe.deployment.canary_stats.decide`, over the window's counters and the labeled precision of
both models (:mod:`loupe.deployment.canary_labels`), with the stack's margins (``CanaryUncertainMargin``,
``CanaryNgMargin``, ``CanaryPrecisionMargin``, ``CanaryMinLabeledFrames``). ``hold`` (the NG rate moved and too few
labels say whether for the better) keeps the run waiting, in Wait states, with the rollout lock: one notification
says so with the numbers and what a person can do; each check re-reads the labels and decides again on the closed
window,
until enough labels decide, a person does (``loupe canary promote|rollback``), the package leaves Approved, or
``CanaryHoldTimeoutSeconds`` pass: then the cohort is rolled back, the safe side, with that reason.
``promote`` revises the fleet's deployment with the
challenger and brings the cohort back (the verdict and its numbers in the run's record and notification);
otherwise the cohort's deployment is revised back to the fleet's (champion), the cohort comes back, the package is
marked (the verdict and numbers in its metadata, its status Rejected) and a notification says why.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

from loupe import greengrass as gg_mod
from loupe.aws_errors import error_code
from loupe.deployment import revision
from loupe.deployment.canary_labels import iso, labeled_precision
from loupe.deployment.canary_stats import CohortCounts, LabeledCounts, Policy, decide
from loupe.deployment.clients import AwsClients
from loupe.deployment.document import first_check, poll_interval, start_deployment
from loupe.deployment.errors import DeploymentError
from loupe.deployment.outcomes import overall
from loupe.deployment.packages import DEVICES_IN_STATE, Package, describe_package
from loupe.deployment.store import utc_now
from loupe.edge_metrics import canary_group

METADATA_VALUE_MAX = 256  # CustomerMetadataProperties: values of at most 256 characters (SageMaker API reference)


def per_device(deployment: dict[str, Any]) -> dict[str, Any]:
    """The deployment's outcome read device by device (ListEffectiveDeployments and what each serves), not from its
    IoT job: the job's executions list only the targets it had or reached, and a device that joins the target group
    after the deployment was created may not be among them yet when the job looks finished."""
    return {**deployment, "iot_job_id": "", "job_id": deployment.get("iot_job_id", "")}


def choose_cohort(devices: list[str], percent: int, salt: str) -> list[str]:
    """``percent`` % of ``devices`` (at least one), chosen by a hash of ``salt`` and the thing name."""
    if not devices:
        return []
    size = min(len(devices), max(1, math.ceil(len(devices) * percent / 100)))
    ranked = sorted(devices, key=lambda t: hashlib.sha256(f"{salt}|{t}".encode()).hexdigest())
    return sorted(ranked[:size])


def plan(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    """Once an ``approved`` run holds the lock: whether its package goes through a canary first (``enabled``), and
    why not. A canary needs a champion: the package the group runs now, another than this one."""
    percent = int(state.get("canary_percent") or 0)
    if state.get("mode", "approved") != "approved" or percent <= 0:
        return {"enabled": False, "reason": "no canary: CanaryPercent is 0" if percent <= 0 else "not an approval"}
    current = aws.store.current_target(state["thing_group"]) or {}
    package = Package(**state["package"])
    if not current.get("package_arn"):
        return {"enabled": False, "reason": "no canary: the group runs no champion yet"}
    if current["package_arn"] == package.arn:
        return {"enabled": False, "reason": f"no canary: package {package.version} is what the group runs"}
    return {"enabled": True, "reason": "", "percent": percent}


def _ensure_group(aws: AwsClients, name: str) -> None:
    try:
        aws.iot.create_thing_group(thingGroupName=name)
    except Exception as exc:
        if error_code(exc) != "ResourceAlreadyExistsException":
            raise


def _move(aws: AwsClients, things: list[str], to_group: str, from_group: str) -> None:
    """Into ``to_group`` first, then out of ``from_group``: never a moment in no group (a device in none would keep
    what it runs, and its health would be refused as not the fleet's)."""
    for thing in things:
        aws.iot.add_thing_to_thing_group(thingGroupName=to_group, thingName=thing)
        aws.iot.remove_thing_from_thing_group(thingGroupName=from_group, thingName=thing)


def cohort_totals(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A cohort's counters (``DeploymentsStore.model_counters`` rows) added up, and its latency."""
    out: dict[str, Any] = {"frames": 0, "uncertain": 0, "ng": 0, "errors": 0, "latency_p95_ms": None}
    for row in rows.values():
        for key in ("frames", "uncertain", "ng", "errors"):
            out[key] += int(row.get(key) or 0)
        # the slowest device's p95 sustained over its last two health windows: one busy window on a device (another
        # process, a model just loaded) is not the model's latency
        p95 = row.get("sustained_p95_ms")
        if p95 is not None and (out["latency_p95_ms"] is None or p95 > out["latency_p95_ms"]):
            out["latency_p95_ms"] = p95
    return out


def counts_since(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The counts of ``now`` less those of ``before`` (a snapshot at the canary's start); the latency of ``now``."""
    out: dict[str, Any] = {
        k: max(0, int(now.get(k) or 0) - int(before.get(k) or 0)) for k in ("frames", "uncertain", "ng", "errors")
    }
    out["latency_p95_ms"] = now.get("latency_p95_ms")
    return out


def _counts(aws: AwsClients, canary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(challenger on the cohort, champion on the rest) since the start; with no rest, the champion's history on
    the cohort before the start."""
    cohort, rest = canary["cohort"], canary["rest"]
    base = canary["baseline"]
    counters = aws.store.model_counters
    challenger = counts_since(cohort_totals(counters(canary["challenger_version"], cohort)), base["challenger"])
    if rest:
        champion = counts_since(cohort_totals(counters(canary["champion_version"], rest)), base["champion"])
    else:
        champion = dict(base["champion"])
    return challenger, champion


def served_version(aws: AwsClients, thing_group: str) -> str:
    """The model version the group's devices serve (and report in their health): the ``modelVersion`` of
    ``com.loupe.model`` in the group's current deployment; "" when it has none."""
    arn = aws.iot.describe_thing_group(thingGroupName=thing_group)["thingGroupArn"]
    current = revision.latest_deployment(aws.greengrass, arn) or {}
    update = ((current.get("components") or {}).get(gg_mod.MODEL_COMPONENT) or {}).get("configurationUpdate") or {}
    try:
        return str(json.loads(update.get("merge") or "{}").get("modelVersion") or "")
    except ValueError:
        return ""


def start(aws: AwsClients, state: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Move the cohort to the canary group and deploy the challenger there (a revision of the fleet's deployment)."""
    fleet_group = state["thing_group"]
    group = canary_group(fleet_group)
    devices = list(state.get("devices") or [])
    if not devices:
        raise DeploymentError(f"a canary needs the devices of {fleet_group} in the run's state")
    run_id = state.get("run_id") or "manual"
    cohort = choose_cohort(devices, int(state["canary"]["percent"]), run_id)
    rest = [d for d in devices if d not in cohort]
    current = aws.store.current_target(fleet_group) or {}
    champion_version = served_version(aws, fleet_group) or str(current.get("model_version", ""))
    challenger_version = str(state["model"]["model_version"])
    baseline_rest = cohort_totals(aws.store.model_counters(champion_version, rest or cohort))
    baseline = {
        "challenger": cohort_totals(aws.store.model_counters(challenger_version, cohort)),
        "champion": baseline_rest,
    }
    _ensure_group(aws, group)
    small = len(cohort) <= DEVICES_IN_STATE
    if not small:  # the deployment's job must target the cohort: its members are in the group first
        _move(aws, cohort, group, fleet_group)
    deployment = start_deployment(
        aws.greengrass, aws.iot, state, aws.settings, int(state["timeout_seconds"]), thing_group=group
    )
    if small:
        # the group's deployment exists before its members come, so no device joining it meets an older one (a
        # thing group deployment is continuous: a device added to the group gets the group's latest deployment)
        _move(aws, cohort, group, fleet_group)
        deployment = per_device(deployment)
    frames = int(state.get("canary_window_frames") or 500)
    window_s = int(state.get("canary_timeout_seconds") or 3600)
    canary = {
        **state["canary"],
        "started_epoch": time.time() if now is None else now,
        "group": group,
        "cohort": cohort,
        "rest": rest,
        "champion_arn": current.get("package_arn", ""),
        "champion_version": champion_version,
        "challenger_version": challenger_version,
        "baseline": baseline,
        "window_frames": frames,
        "window_timeout_seconds": window_s,
        "poll_seconds": poll_interval(window_s),
        "deployment_id": deployment["deployment_id"],
    }
    aws.store.put_canary(
        fleet_group,
        {
            "status": "RUNNING",
            "run_id": run_id,
            "package_arn": state["package"]["arn"],
            "challenger_version": challenger_version,
            "champion_version": champion_version,
            "cohort": cohort,
            "started": utc_now(),
        },
    )
    # the cohort alone is what this deployment's outcome is read on
    return {"canary": canary, "deployment": deployment, "devices": cohort, "device_count": len(cohort)}


def window(aws: AwsClients, state: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The window so far; ``done`` once the cohort served the window's frames, at the timeout, when the package is
    no longer Approved, or when a person gave a verdict. Keeps the group's rollout lock meanwhile. In a hold the
    window is closed: its counts stay those it ended with (the hold waits for labels of those frames' models, not
    for more frames, and a verdict re-read every few seconds on growing counts would test again and again until a
    noisy guard fired); the check keeps the lock and looks for a person's verdict or a rejection."""
    now = time.time() if now is None else now
    canary = dict(state["canary"])
    group, run_id = state["thing_group"], state.get("run_id") or "manual"
    canary.setdefault("window_started", now)
    deadline = float(canary["window_started"]) + int(canary["window_timeout_seconds"])
    aws.store.acquire_lock(group, run_id, int(canary["window_timeout_seconds"]) + 2 * int(state["timeout_seconds"]))
    if not (canary.get("hold") and canary.get("window")):
        challenger, champion = _counts(aws, canary)
        canary["window"] = {"challenger": challenger, "champion": champion, "checked": utc_now()}
    challenger = canary["window"]["challenger"]
    item = aws.store.canary(group) or {}
    override = item.get("override") if item.get("run_id") == run_id else None
    status = describe_package(aws.sagemaker, state["package"]["arn"]).status
    ended = ""
    if override:
        ended = f"by hand: {override.get('verdict')} by {override.get('who') or 'someone'}"
        canary["override"] = {k: str(v) for k, v in dict(override).items()}
    elif status != "Approved":
        ended = f"the package is now {status}"
    elif canary.get("hold"):  # the window ended before the hold: each check re-decides on the labels since
        ended = str(canary.get("ended") or "held")
    elif challenger["frames"] >= int(canary["window_frames"]):
        ended = f"the cohort served {challenger['frames']} frames (window {canary['window_frames']})"
    elif now >= deadline:
        ended = f"timeout after {canary['window_timeout_seconds']} s with {challenger['frames']} frames"
    canary["done"], canary["ended"] = bool(ended), ended
    return {"canary": canary}


def policy(state: dict[str, Any], window_frames: int) -> Policy:
    """The verdict's policy: the stack's margins (the Prepare state's ``canary_*`` values), defaults where absent."""
    base = Policy()

    def number(key: str, default: float) -> float:
        value = state.get(key)
        return default if value in (None, "") else float(value)

    return Policy(
        min_frames=window_frames,
        uncertain_margin=number("canary_uncertain_margin", base.uncertain_margin),
        ng_margin=number("canary_ng_margin", base.ng_margin),
        precision_margin=number("canary_precision_margin", base.precision_margin),
        min_labeled=int(number("canary_min_labeled", base.min_labeled)),
    )


def labels(aws: AwsClients, canary: dict[str, Any]) -> tuple[LabeledCounts, LabeledCounts]:
    """(challenger, champion) labeled counts of the frames their devices sent back since the canary started."""
    started = float(canary.get("started_epoch") or canary.get("window_started") or 0)
    got = labeled_precision(aws.ledger, canary, iso(started))
    return got["challenger"], got["champion"]


def verdict(aws: AwsClients, state: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The window's verdict (:func:`loupe.deployment.canary_stats.decide`), unless a person gave one or the package
    is no longer Approved; a ``hold`` past ``canary_hold_timeout_seconds`` is a rollback."""
    now = time.time() if now is None else now
    canary = dict(state["canary"])
    if "window" not in canary:  # the cohort never served the challenger: nothing to compare, back to the champion
        _, why = overall(state.get("outcomes") or {})
        canary["verdict"] = {"verdict": "rollback", "reasons": [f"the cohort did not serve the challenger: {why}"]}
        canary["verdict"].update({"tests": [], "canary": {}, "champion": {}, "policy": {}})
        return {"canary": canary}
    counts = canary["window"]
    rules = policy(state, int(canary["window_frames"]))
    challenger, champion = CohortCounts(**counts["challenger"]), CohortCounts(**counts["champion"])
    result = decide(challenger, champion, rules, labels(aws, canary))
    out = result.to_json()
    override = canary.get("override")
    if override:
        out["statistical_verdict"] = out["verdict"]
        out["verdict"] = override["verdict"]
        out["reasons"] = [f"{canary['ended']}: {override.get('reason') or 'no reason given'}"] + out["reasons"]
    elif canary["ended"].startswith("the package is now"):
        out["statistical_verdict"] = out["verdict"]
        out["verdict"] = "rollback"
        out["reasons"] = [canary["ended"]] + out["reasons"]
    elif out["verdict"] == "hold":
        canary["hold"] = _hold(aws, state, canary, out, now)
        if canary["hold"]["timed_out"]:
            out["statistical_verdict"] = "hold"
            out["verdict"] = "rollback"
            out["reasons"] = [
                f"held {canary['hold']['timeout_seconds']} s (CanaryHoldTimeoutSeconds) without enough labels or a"
                " person's verdict: rolled back, the safe default"
            ] + out["reasons"]
    canary["verdict"] = out
    return {"canary": canary}


def _hold(
    aws: AwsClients, state: dict[str, Any], canary: dict[str, Any], result: dict[str, Any], now: float
) -> dict[str, Any]:
    """The canary's hold: since when, until when, whether this check sends its one notification (the first), and
    the numbers in the group's canary item (``loupe canary status``)."""
    hold = dict(canary.get("hold") or {})
    first = "since" not in hold
    timeout = int(state.get("canary_hold_timeout_seconds") or 86400)
    since = float(hold.get("since", now))
    hold.update(
        since=since,
        timeout_seconds=timeout,
        deadline=since + timeout,
        poll_seconds=poll_interval(timeout),
        timed_out=now >= since + timeout,
        notify=first and now < since + timeout,
        checks=int(hold.get("checks") or 0) + 1,
    )
    group, run_id = state["thing_group"], state.get("run_id") or "manual"
    summary = {
        "since": iso(since),
        "until": iso(since + timeout),
        "reasons": list(result.get("reasons") or []),
        "labels": result.get("labels") or {},
        "ng": [(result.get("canary") or {}).get("ng"), (result.get("champion") or {}).get("ng")],
        "frames": [(result.get("canary") or {}).get("frames"), (result.get("champion") or {}).get("frames")],
    }
    aws.store.set_canary_hold(group, run_id, summary)
    if hold["notify"]:
        version = canary.get("challenger_version", "")
        hold["subject"] = f"Loupe canary of model {version}: held for labels"[:99]
        hold["message"] = hold_message(canary, result, summary)
    return hold


def hold_message(canary: dict[str, Any], result: dict[str, Any], summary: dict[str, Any]) -> str:
    """The hold's notification: why, the numbers, and what a person can do."""
    lines = [
        f"The canary of model {canary.get('challenger_version')} (on {', '.join(canary.get('cohort') or [])}) beside"
        f" model {canary.get('champion_version')} is held: its NG rate differs from the champion's beyond the margin,"
        " and too few labeled frames say whether it finds more defects or scraps more good parts.",
    ]
    lines += [f"  why: {reason}" for reason in summary["reasons"]]
    for who, key in (("canary", "canary"), ("champion", "champion")):
        c, lab = result.get(key) or {}, (summary["labels"] or {}).get(key) or {}
        lines.append(
            f"  {who}: {c.get('ng')} NG of {c.get('frames')} frames; labeled frames {lab.get('frames', 0)},"
            f" predicted boxes {lab.get('predicted', 0)}, true positives {lab.get('true_positives', 0)},"
            f" precision {lab.get('precision')}, NG calls correct {lab.get('ng_correct', 0)}/{lab.get('ng_calls', 0)}"
        )
    lines += [
        f"It re-decides as labels arrive until {summary['until']}; then it is rolled back (the safe default).",
        "What you can do: label the canary's frames in the labeling app (its uncertain frames are queued there),"
        " or decide now: loupe canary promote --reason ... | loupe canary rollback --reason ...",
    ]
    return "\n".join(lines)


def promote(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    """Revise the fleet's deployment with the challenger, then bring the cohort back into the fleet's group (it
    gets the same deployment there); the run's outcome is then read on the whole fleet."""
    canary = state["canary"]
    fleet_group = state["thing_group"]
    deployment = start_deployment(aws.greengrass, aws.iot, state, aws.settings, int(state["timeout_seconds"]))
    aws.store.mark_pending(fleet_group, state["package"], deployment["deployment_id"], state.get("run_id", ""))
    _move(aws, canary["cohort"], fleet_group, canary["group"])
    devices = sorted(set(canary["cohort"]) | set(canary["rest"]))
    if len(devices) <= DEVICES_IN_STATE:  # the cohort joined after the job was created: ask every device
        deployment = per_device(deployment)
    # the verdict stays in the run's record and notification, not in the package: UpdateModelPackage on an Approved
    # package is a state change event of its own, which would start another approval run of it
    aws.store.put_canary(fleet_group, {"status": "PROMOTED", "run_id": state.get("run_id", ""), "ended": utc_now()})
    return {"deployment": deployment, "devices": devices, "device_count": len(devices)}


def rollback(aws: AwsClients, state: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Revise the cohort's deployment back to the fleet's (the champion, as the rest of the fleet runs it)."""
    canary = state["canary"]
    gg, iot = aws.greengrass, aws.iot
    fleet_arn = iot.describe_thing_group(thingGroupName=state["thing_group"])["thingGroupArn"]
    target_arn = iot.describe_thing_group(thingGroupName=canary["group"])["thingGroupArn"]
    fleet = revision.latest_deployment(gg, fleet_arn)
    if not fleet:
        raise DeploymentError(f"thing group {state['thing_group']} has no deployment to go back to")
    keys = ("components", "deploymentPolicies", "iotJobConfiguration")
    doc = {k: fleet[k] for k in keys if fleet.get(k)}
    token = hashlib.sha256(f"rollback|{canary['deployment_id']}".encode()).hexdigest()[:64]
    out = gg.create_deployment(
        targetArn=target_arn,
        deploymentName=f"loupe canary rollback to model {canary['champion_version']}"[:256],
        clientToken=token,
        **doc,
    )
    started = time.time() if now is None else now
    timeout = max(1, int(state["timeout_seconds"]))
    deployment = {
        **state["deployment"],
        "deployment_id": out["deploymentId"],
        "iot_job_id": out.get("iotJobId", ""),
        "model_version": canary["champion_version"],
        "started": started,
        "deadline": started + timeout,
        "poll_seconds": first_check(timeout),
    }
    return {"deployment": deployment, "devices": list(canary["cohort"]), "device_count": len(canary["cohort"])}


def rolled_back(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    """The cohort serves the champion again (or did not answer): bring it back into the fleet's group and mark the
    package. Returns ``canary_outcome`` for the record."""
    canary = state["canary"]
    _move(aws, canary["cohort"], state["thing_group"], canary["group"])
    _reject_package(aws, state, canary["verdict"])
    aws.store.put_canary(
        state["thing_group"], {"status": "ROLLED_BACK", "run_id": state.get("run_id", ""), "ended": utc_now()}
    )
    return {}


def bring_home(aws: AwsClients, state: dict[str, Any]) -> bool:
    """After a workflow error: a cohort still in the canary group goes back to the fleet's group (it gets the fleet's
    deployment there). True when it did."""
    canary = state.get("canary") or {}
    if not canary.get("cohort") or not canary.get("group"):
        return False
    item = aws.store.canary(state["thing_group"]) or {}
    if item.get("run_id") != state.get("run_id") or item.get("status") != "RUNNING":
        return False
    _move(aws, list(canary["cohort"]), state["thing_group"], canary["group"])
    aws.store.put_canary(
        state["thing_group"], {"status": "ABORTED", "run_id": state.get("run_id", ""), "ended": utc_now()}
    )
    return True


def _short(value: str) -> str:
    return value if len(value) <= METADATA_VALUE_MAX else value[: METADATA_VALUE_MAX - 3] + "..."


def verdict_metadata(result: dict[str, Any]) -> dict[str, str]:
    """The verdict in the package's ``CustomerMetadataProperties`` (each value at most 256 characters)."""
    challenger, champion = result.get("canary") or {}, result.get("champion") or {}

    def share(c: dict[str, Any], key: str) -> str:
        return f"{c.get(key, 0)}/{c.get('frames', 0)}"

    numbers = {
        "frames": [challenger.get("frames", 0), champion.get("frames", 0)],
        "uncertain": [share(challenger, "uncertain"), share(champion, "uncertain")],
        "ng": [share(challenger, "ng"), share(champion, "ng")],
        "errors": [challenger.get("errors", 0), champion.get("errors", 0)],
        "p95_ms": [challenger.get("latency_p95_ms"), champion.get("latency_p95_ms")],
    }
    marks = result.get("labels") or {}
    if marks:  # labeled precision: true positives / predicted boxes, on labeled frames
        numbers["precision"] = [
            f"{m.get('true_positives', 0)}/{m.get('predicted', 0)}@{m.get('frames', 0)}"
            for m in (marks.get("canary") or {}, marks.get("champion") or {})
        ]
    return {
        "canary_verdict": str(result.get("verdict", "")),
        "canary_reason": _short("; ".join(result.get("reasons") or []) or "not worse beyond the margins"),
        "canary_numbers": _short(json.dumps(numbers, separators=(",", ":"))),
        "canary_test": _short(
            ",".join(f"{t['metric']}/{t['direction']}:{t['method']} p={t['p_value']:.3g}" for t in result["tests"])
        ),
    }


def _reject_package(aws: AwsClients, state: dict[str, Any], result: dict[str, Any]) -> None:
    """The verdict and its numbers in the package's metadata, and the package Rejected (so it is never the champion
    a later rollback or canary goes back to) with the reason as its approval description. Its Rejected event finds
    the package neither running nor rolling out on the group, and starts nothing."""
    aws.sagemaker.update_model_package(
        ModelPackageArn=state["package"]["arn"],
        CustomerMetadataProperties=verdict_metadata(result),
        ModelApprovalStatus="Rejected",
        ApprovalDescription=_short("canary rolled back: " + "; ".join(result.get("reasons") or [])),
    )
