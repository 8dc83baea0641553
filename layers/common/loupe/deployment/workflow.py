"""The tasks of ``statemachines/edge_deployment.asl.json``, run by ``functions/deployment_tasks``.

Each Task state sends ``{"task": <name>, "input": <the run's state>}`` (:class:`loupe.tasks.TaskEnvelope`); the
task returns the run's state with its result merged in (``{**input, **result}``), which the state machine takes
as the new state (``OutputPath: $.Payload``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from loupe import greengrass as gg_mod
from loupe.deployment import canary
from loupe.deployment.clients import AwsClients
from loupe.deployment.components import inference_component, publish_model_component
from loupe.deployment.document import next_check, start_deployment
from loupe.deployment.errors import DeploymentError
from loupe.deployment.outcomes import device_outcomes, job_outcomes, overall
from loupe.deployment.packages import resolve
from loupe.deployment.records import error_message, record
from loupe.deployment.rollout import lock_and_decide
from loupe.deployment.shadow import resolve_shadow
from loupe.deployment.verification import verify
from loupe.tasks import Task, TaskEnvelope, dispatch

Step = Callable[[AwsClients, dict[str, Any]], dict[str, Any]]


def _thing_group(aws: AwsClients) -> str:
    if not aws.settings.thing_group_name:
        raise DeploymentError("missing configuration: THING_GROUP_NAME")
    return aws.settings.thing_group_name


def resolve_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    if (state.get("request") or {}).get("mode") == "shadow":  # production + the candidate beside it
        return resolve_shadow(aws.sagemaker, aws.iot, aws.store, state, _thing_group(aws))
    return resolve(aws.sagemaker, aws.iot, state, _thing_group(aws))


def verify_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    out = {"verified": verify(aws.s3, state["package"])}
    if state.get("candidate"):
        out["candidate_verified"] = verify(aws.s3, state["candidate"])
    return out


def publish_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    inference = inference_component(aws.greengrass, aws.settings)
    model = publish_model_component(aws.greengrass, aws.s3, state["package"], inference, aws.settings)
    out: dict[str, Any] = {"model": model, "inference": inference}
    if state.get("candidate"):
        candidate = publish_model_component(
            aws.greengrass, aws.s3, state["candidate"], inference, aws.settings, gg_mod.SHADOW_COMPONENT
        )
        out["shadow"] = {"model": candidate, "every_nth_frame": aws.settings.shadow_every_nth_frame}
    return out


def lock_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    out = lock_and_decide(aws.sagemaker, aws.store, state)
    if (out.get("lock") or {}).get("held"):  # the state machine's LockHeld reads $.canary.enabled
        ready = out.get("status") == "ready"
        out["canary"] = canary.plan(aws, state) if ready else {"enabled": False, "reason": "nothing to deploy"}
    if out.get("status") == "ready" and state.get("shadow"):
        # from here on the candidate counts as the group's: a rejection arriving before CreateDeployment returns
        # must find it and end it (its end_shadow run waits for this lock)
        _mark_shadow(aws, state, "")
    return out


def _mark_shadow(aws: AwsClients, state: dict[str, Any], deployment_id: str) -> None:
    served = str(state["shadow"]["model"].get("model_version") or state["candidate"]["version"])
    aws.store.mark_shadow(_thing_group(aws), state["candidate"], served, deployment_id, state.get("run_id", ""))


def deploy_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    out = start_deployment(aws.greengrass, aws.iot, state, aws.settings, int(state["timeout_seconds"]))
    group, run_id = _thing_group(aws), state.get("run_id", "")
    aws.store.mark_pending(group, state["package"], out["deployment_id"], run_id)
    if state.get("shadow"):  # the candidate is on its way beside production, in this deployment
        _mark_shadow(aws, state, out["deployment_id"])
    return {"deployment": out}


def poll_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    """The devices' outcomes so far, and when to look again (``deployment.poll_seconds``: ``next_check``)."""
    d = state["deployment"]
    if d.get("iot_job_id"):  # the deployment's IoT job: pages of 250 devices, not one call per device
        expected = int(state.get("device_count") or len(state.get("devices") or []))
        outcomes = job_outcomes(aws.iot, aws.greengrass, d, float(d["deadline"]), store=aws.store, expected=expected)
    else:
        outcomes = device_outcomes(
            aws.greengrass,
            d["deployment_id"],
            state["devices"],
            float(d["deadline"]),
            store=aws.store,
            model_version=d.get("model_version", ""),
        )
    return {"outcomes": outcomes, "deployment": {**d, "poll_seconds": next_check(d, time.time())}}


def record_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    outcome, reason = overall(state.get("outcomes") or {})
    return {"summary": record(aws.store, state, outcome, reason)}


def canary_rolled_back_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    """The cohort is back on the champion: bring it home, mark the package, record the run."""
    canary.rolled_back(aws, state)
    reasons = "; ".join(state["canary"]["verdict"].get("reasons") or [])
    outcome, served = overall(state.get("outcomes") or {})
    reason = f"canary rolled back: {reasons}; the cohort back on the champion: {served}"
    return {"summary": record(aws.store, state, "CANARY_ROLLED_BACK" if outcome == "COMPLETED" else "ERROR", reason)}


def record_nothing_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    outcome = "SUPERSEDED" if state.get("status") == "superseded" else "NOTHING_TO_DEPLOY"
    return {"summary": record(aws.store, state, outcome, state.get("reason", ""))}


def record_refused_step(aws: AwsClients, state: dict[str, Any]) -> dict[str, Any]:
    error = state.get("error") or {}
    reason = f"{error.get('Error', 'Error')}: {error_message(error.get('Cause'))}"
    if canary.bring_home(aws, state):  # a workflow error during a canary: the cohort goes back to the fleet's group
        reason += "; the canary cohort is back in the fleet's thing group"
    outcome = "ERROR" if state.get("deployment") else "REFUSED"  # after CreateDeployment: a workflow error
    return {"summary": record(aws.store, state, outcome, reason)}


STEPS: dict[str, Step] = {
    "resolve": resolve_step,
    "verify": verify_step,
    "publish": publish_step,
    "lock": lock_step,
    "deploy": deploy_step,
    "poll": poll_step,
    "record": record_step,
    "record_nothing": record_nothing_step,
    "canary_start": lambda aws, state: canary.start(aws, state),
    "canary_window": lambda aws, state: canary.window(aws, state),
    "canary_verdict": lambda aws, state: canary.verdict(aws, state),
    "canary_promote": lambda aws, state: canary.promote(aws, state),
    "canary_rollback": lambda aws, state: canary.rollback(aws, state),
    "canary_rolled_back": canary_rolled_back_step,
    "record_refused": record_refused_step,
}


def run(envelope: TaskEnvelope, aws: AwsClients) -> dict[str, Any]:
    """The handler's one call: the envelope's step on the run's state; returns the state with the result merged."""

    def task(step: Step) -> Task:
        return lambda env: {**env.input, **step(aws, dict(env.input))}

    return dispatch(envelope, {name: task(step) for name, step in STEPS.items()})
