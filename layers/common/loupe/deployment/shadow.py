"""Shadow mode from the cloud: a package that passed the gate runs beside production on the fleet until a person
decides.

A package of Loupe's group registered ``PendingManualApproval`` with the gate's verdict ``gate=passed`` in its
``CustomerMetadataProperties`` (training/pipeline.py's RegisterModel step; RegisterRefused writes ``gate=refused``)
starts a ``shadow`` run of the edge deployment workflow. The run is an ordinary revision of the fleet's deployment
(same state machine, same lock, same "deployed means serving" check): production stays the package the thing group
runs (``TARGET#<group>`` / ``CURRENT``), re-verified and re-sent unchanged, and the candidate rides beside it as
``com.loupe.shadow`` with the inference component's ``settings.shadow`` block (every Nth frame).

A shadow ends with the next deployment that carries no candidate: the candidate's approval (production switches to
it), or its rejection (an ``end_shadow`` run re-sends production alone). Every deployment resets ``/settings/shadow``
and drops Loupe components it does not carry, so nothing of the candidate stays on a device.

A refused package, a package without the gate's verdict, a package already decided, and a fleet that runs no
production model yet are never shadowed (each with its reason).
"""

from __future__ import annotations

from typing import Any

from loupe.aws_clients import IoT, SageMakerRegistry
from loupe.deployment.packages import Package, check_recipe_values, describe_package, resolve
from loupe.deployment.store import DeploymentsStore

GATE_KEY = "gate"  # CustomerMetadataProperties key the pipeline's register steps write
GATE_PASSED = "passed"
PENDING = "PendingManualApproval"


def why_not_shadowed(status: str, metadata: dict[str, Any]) -> str:
    """Empty when a package with this approval status and metadata may run as a shadow; else why not."""
    if status != PENDING:
        return f"it is {status or 'of no approval status'}, not {PENDING}"
    gate = str(metadata.get(GATE_KEY) or "")
    if gate == "refused":
        return "the gate refused it (gate=refused): a refused package is never shadowed"
    if gate != GATE_PASSED:
        return "it carries no gate verdict (metadata gate=passed)"
    return ""


def shadow_reason(sm: SageMakerRegistry, package_arn: str) -> str:
    """Why the package registered as ``package_arn`` must not be shadowed ("" when it may), from the registry as it
    is now: the event's own detail may be older than the package."""
    try:
        desc = sm.describe_model_package(ModelPackageName=package_arn)
    except Exception as exc:  # noqa: BLE001 - a package that cannot be read is not shadowed, with the reason
        return f"cannot describe it: {exc}"
    return why_not_shadowed(
        str(desc.get("ModelApprovalStatus") or ""), dict(desc.get("CustomerMetadataProperties") or {})
    )


def resolve_shadow(
    sm: SageMakerRegistry, iot: IoT, store: DeploymentsStore, state: dict[str, Any], thing_group: str
) -> dict[str, Any]:
    """The resolve step of a ``shadow`` run: ``package`` is production (what the group runs), ``candidate`` the
    requested package. ``status`` is ``ready`` or ``nothing_to_deploy`` with the reason."""
    asked = state.get("request") or {}
    candidate = describe_package(sm, str(asked.get("package_arn") or ""))
    check_recipe_values(candidate)
    current = store.current_target(thing_group) or {}
    production = current.get("package_arn")
    out = resolve(
        sm,
        iot,
        {
            "request": {
                "package_arn": production,
                "mode": "shadow",
                "reason": f"thing group {thing_group} runs no production model yet: a candidate runs beside one",
            }
        },
        thing_group,
    )
    out["candidate"] = candidate.to_json()
    refusal = why_not_shadowed(candidate.status, candidate.metadata)
    if refusal:
        return {
            **out,
            "status": "nothing_to_deploy",
            "reason": f"candidate {candidate.version} not shadowed: {refusal}",
        }
    if production == candidate.arn:
        return {**out, "status": "nothing_to_deploy", "reason": f"package {candidate.version} is production already"}
    return out


def still_due(sm: SageMakerRegistry, store: DeploymentsStore, state: dict[str, Any]) -> str:
    """Once a ``shadow`` or ``end_shadow`` run holds the lock: "" when it must still deploy, else why not.

    Production must still be what the group runs (a run that waited behind an approval would otherwise send the
    older model back); a shadow's candidate must still wait for a decision; an ``end_shadow`` run must still have
    its candidate on the group."""
    group = state["thing_group"]
    production = Package(**state["package"])
    current = (store.current_target(group) or {}).get("package_arn")
    if current != production.arn:
        return f"thing group {group} now runs {current or 'nothing'}, not package {production.version}"
    if state.get("mode") == "shadow":
        candidate = Package(**state["candidate"])
        refusal = shadow_reason(sm, candidate.arn)
        return f"candidate {candidate.version} not shadowed: {refusal}" if refusal else ""
    ended = (state.get("request") or {}).get("ended")
    shadowing = (store.shadow_target(group) or {}).get("package_arn")
    if not ended or shadowing != ended:
        return f"thing group {group} no longer runs {ended or 'a candidate'} beside production"
    return ""
