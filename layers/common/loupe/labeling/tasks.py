"""The labeling state machine's task functions: one :class:`loupe.tasks.TaskEnvelope` name per domain call.

statemachines/labeling.asl.json sends ``{"task", "input", "token"?}`` (``start_training`` also
``training_state_machine`` and ``started_by``). :data:`STEPS` maps each name to a function of the worker's
:class:`~loupe.labeling.clients.LabelingClients` and the envelope, the shape of ``loupe.deployment.workflow``'s
table. An AWS throttling error is raised as :class:`ThrottlingException`, the name the state machine's Retry
(backoff + jitter) matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loupe import aws_errors
from loupe.labeling import app_job, app_verification, collection, dataset, features, labeling_job, verification
from loupe.labeling.clients import LabelingClients
from loupe.labeling.config import ThrottlingException
from loupe.labeling.release import release_run
from loupe.settings import SettingsError
from loupe.tasks import TaskEnvelope, TaskError, dispatch

Step = Callable[[LabelingClients, TaskEnvelope], dict[str, Any]]


def write_manifest(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    return labeling_job.write_manifest(c.s3, c.ledger, c.cfg, e.input)


def create_job(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    return labeling_job.create_labeling_job(c.sagemaker, c.ledger, c.cfg, e.input, e.require_token())


def create_app_job(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    token = e.require_token()
    return app_job.create_app_job(c.require_app_store(), c.ledger, c.cfg, e.input, token, c.clock())


def expire_app_job(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    return app_job.expire_app_job(c.require_app_store(), c.s3, c.sfn, c.ledger, e.input, c.clock())


def stop_job(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    return labeling_job.stop_waited_job(c.sagemaker, c.ledger, e.input)


def stop_verification_job(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    return labeling_job.stop_waited_job(c.sagemaker, c.ledger, e.input, purpose="verification")


def collect_labels(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    verify = str((e.input.get("config") or {}).get("verify", "false")).lower() == "true"
    return collection.collect_labels(c.s3, c.sagemaker, c.ledger, e.input, verification=verify)


def create_verification_job(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    token = e.require_token()
    return verification.create_verification_job(c.s3, c.sagemaker, c.ledger, c.cfg, e.input, token)


def create_app_verification_job(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    token = e.require_token()
    return app_verification.create_app_verification_job(
        c.require_app_store(), c.s3, c.ledger, c.cfg, e.input, token, c.clock()
    )


def expire_app_verification_job(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    return app_job.expire_app_job(
        c.require_app_store(), c.s3, c.sfn, c.ledger, e.input, c.clock(), purpose="verification"
    )


def apply_verification(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    return verification.apply_verification(c.s3, c.sagemaker, c.ledger, e.input)


def build_dataset(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    return dataset.build_dataset(c.s3, c.ledger, c.cfg, new=e.input["collected"]["labeled"])


def put_features(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    if not c.cfg.feature_group:
        raise SettingsError("missing environment variable(s): FEATURE_GROUP_NAME")
    run = e.input
    labeled, version = run["collected"]["labeled"], run["dataset"]["version"]
    return features.put_features(c.featurestore, c.ledger, c.cfg.feature_group, labeled, version)


def start_training(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    extra = e.model_extra or {}
    if not extra.get("training_state_machine"):
        raise TaskError("start_training needs training_state_machine in its envelope")
    return dataset.start_training(
        c.sfn, str(extra["training_state_machine"]), e.input, str(extra.get("started_by") or "")
    )


def release(c: LabelingClients, e: TaskEnvelope) -> dict[str, Any]:
    return release_run(c.ledger, e.input, c.sagemaker, c.app_store)


STEPS: dict[str, Step] = {
    "write_manifest": write_manifest,
    "create_job": create_job,
    "create_app_job": create_app_job,
    "expire_app_job": expire_app_job,
    "stop_job": stop_job,
    "stop_verification_job": stop_verification_job,
    "collect_labels": collect_labels,
    "create_verification_job": create_verification_job,
    "create_app_verification_job": create_app_verification_job,
    "expire_app_verification_job": expire_app_verification_job,
    "apply_verification": apply_verification,
    "build_dataset": build_dataset,
    "put_features": put_features,
    "start_training": start_training,
    "release": release,
}


def run(envelope: TaskEnvelope, clients: LabelingClients) -> dict[str, Any]:
    """The handler's one call: the envelope's task with the worker's clients."""

    def task(step: Step) -> Callable[[TaskEnvelope], dict[str, Any]]:
        return lambda env: step(clients, env)

    try:
        return dispatch(envelope, {name: task(step) for name, step in STEPS.items()})
    except Exception as exc:
        if aws_errors.is_throttling(exc):
            raise ThrottlingException(str(exc)) from exc
        raise
