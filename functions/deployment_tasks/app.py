"""Task worker of statemachines/edge_deployment.asl.json: one ``action`` per state, the run's state in and out."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer

from loupe import deployment as dep
from loupe import fleet_serving

logger = Logger()
tracer = Tracer()


def _resolve(state: dict[str, Any], s: dep.DeploymentSettings) -> dict[str, Any]:
    return dep.resolve(boto3.client("sagemaker"), boto3.client("iot"), state, s)


def _verify(state: dict[str, Any], s: dep.DeploymentSettings) -> dict[str, Any]:
    return {"verified": dep.verify(boto3.client("s3"), state["package"])}


def _publish(state: dict[str, Any], s: dep.DeploymentSettings) -> dict[str, Any]:
    gg = boto3.client("greengrassv2")
    inference = dep.inference_component(gg, s)
    model = dep.publish_model_component(gg, boto3.client("s3"), state["package"], inference, s)
    return {"model": model, "inference": inference}


def _deploy(state: dict[str, Any], s: dep.DeploymentSettings) -> dict[str, Any]:
    out = dep.start_deployment(
        boto3.client("greengrassv2"), boto3.client("iot"), state, s, int(state["timeout_seconds"])
    )
    dep.mark_pending(_table(s), s.thing_group, state["package"], out["deployment_id"], state.get("run_id", ""))
    return {"deployment": out}


def _lock(state: dict[str, Any], s: dep.DeploymentSettings) -> dict[str, Any]:
    return dep.lock_and_decide(boto3.client("sagemaker"), _table(s), state)


def _poll(state: dict[str, Any], s: dep.DeploymentSettings) -> dict[str, Any]:
    d = state["deployment"]
    table = _table(s)
    if d.get("iot_job_id"):  # the deployment's IoT job: pages of 250 devices, not one call per device
        ddb = boto3.resource("dynamodb")
        outcomes = dep.job_outcomes(
            boto3.client("iot"),
            boto3.client("greengrassv2"),
            d,
            float(d["deadline"]),
            serving_many=lambda things: fleet_serving.serving_versions(ddb, s.deployments_table, things),
            table=table,
        )
        return {"outcomes": outcomes}
    return {
        "outcomes": dep.device_outcomes(
            boto3.client("greengrassv2"),
            d["deployment_id"],
            state["devices"],
            float(d["deadline"]),
            serving=lambda thing: fleet_serving.serving_version(table, thing),
            model_version=d.get("model_version", ""),
        )
    }


def _record(state: dict[str, Any], s: dep.DeploymentSettings) -> dict[str, Any]:
    outcome, reason = dep.overall(state.get("outcomes") or {})
    return {"summary": dep.record(_table(s), state, outcome, reason)}


def _record_nothing(state: dict[str, Any], s: dep.DeploymentSettings) -> dict[str, Any]:
    outcome = "SUPERSEDED" if state.get("status") == "superseded" else "NOTHING_TO_DEPLOY"
    return {"summary": dep.record(_table(s), state, outcome, state.get("reason", ""))}


def _record_refused(state: dict[str, Any], s: dep.DeploymentSettings) -> dict[str, Any]:
    error = state.get("error") or {}
    reason = f"{error.get('Error', 'Error')}: {dep.error_message(error.get('Cause'))}"
    outcome = "ERROR" if state.get("deployment") else "REFUSED"  # after CreateDeployment: a workflow error
    return {"summary": dep.record(_table(s), state, outcome, reason)}


def _table(s: dep.DeploymentSettings) -> Any:
    return boto3.resource("dynamodb").Table(s.deployments_table)


ACTIONS = {
    "resolve": _resolve,
    "verify": _verify,
    "publish": _publish,
    "lock": _lock,
    "deploy": _deploy,
    "poll": _poll,
    "record": _record,
    "record_nothing": _record_nothing,
    "record_refused": _record_refused,
}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context) -> dict[str, Any]:
    action = event.get("action")
    if action not in ACTIONS:
        raise dep.DeploymentError(f"unknown action {action!r}; expected one of {sorted(ACTIONS)}")
    state = dict(event.get("state") or {})
    settings = dep.DeploymentSettings.from_env(dict(os.environ))
    result = ACTIONS[action](state, settings)
    logger.info("deployment step done", extra={"action": action, "run_id": state.get("run_id")})
    return {**state, **result}
