"""The labeling state machine's task functions: one :class:`loupe.tasks.TaskEnvelope` name per domain call.

statemachines/labeling.asl.json sends ``{"task", "input", "token"?}`` (``start_training`` also
``training_state_machine`` and ``started_by``). An AWS throttling error is raised as :class:`ThrottlingException`,
the name the state machine's Retry (backoff + jitter) matches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loupe import aws_errors
from loupe.aws_clients import S3, FeatureStoreRuntime, SageMakerLabeling, StepFunctions
from loupe.labeling import app_job, app_verification, collection, dataset, features, labeling_job, verification
from loupe.labeling.config import LabelingConfig, ThrottlingException
from loupe.labeling.release import release_run
from loupe.labeling.task_store import TaskStore
from loupe.ledger import Ledger
from loupe.settings import SettingsError
from loupe.tasks import Task, TaskEnvelope, TaskError, dispatch


@dataclass(frozen=True)
class LabelingTasks:
    s3: S3
    sagemaker: SageMakerLabeling
    featurestore: FeatureStoreRuntime
    sfn: StepFunctions
    ledger: Ledger
    cfg: LabelingConfig
    # the labeling app's table (LabelingService=Loupe); None where the function has no LABELING_TASKS_TABLE
    app_store: TaskStore | None = None
    clock: Callable[[], float] = field(default=time.time)

    def run(self, envelope: TaskEnvelope) -> dict[str, Any]:
        try:
            return dispatch(envelope, self.table())
        except Exception as exc:
            if aws_errors.is_throttling(exc):
                raise ThrottlingException(str(exc)) from exc
            raise

    def table(self) -> dict[str, Task]:
        return {
            "write_manifest": self.write_manifest,
            "create_job": self.create_job,
            "create_app_job": self.create_app_job,
            "expire_app_job": self.expire_app_job,
            "stop_job": self.stop_job,
            "stop_verification_job": self.stop_verification_job,
            "collect_labels": self.collect_labels,
            "create_verification_job": self.create_verification_job,
            "create_app_verification_job": self.create_app_verification_job,
            "expire_app_verification_job": self.expire_app_verification_job,
            "apply_verification": self.apply_verification,
            "build_dataset": self.build_dataset,
            "put_features": self.put_features,
            "start_training": self.start_training,
            "release": self.release,
        }

    def write_manifest(self, e: TaskEnvelope) -> dict[str, Any]:
        return labeling_job.write_manifest(self.s3, self.ledger, self.cfg, e.input)

    def create_job(self, e: TaskEnvelope) -> dict[str, Any]:
        return labeling_job.create_labeling_job(self.sagemaker, self.ledger, self.cfg, e.input, e.require_token())

    def _app_store(self) -> TaskStore:
        if self.app_store is None:
            raise SettingsError("missing environment variable(s): LABELING_TASKS_TABLE")
        return self.app_store

    def create_app_job(self, e: TaskEnvelope) -> dict[str, Any]:
        token = e.require_token()
        return app_job.create_app_job(self._app_store(), self.ledger, self.cfg, e.input, token, self.clock())

    def expire_app_job(self, e: TaskEnvelope) -> dict[str, Any]:
        return app_job.expire_app_job(self._app_store(), self.s3, self.sfn, self.ledger, e.input, self.clock())

    def stop_job(self, e: TaskEnvelope) -> dict[str, Any]:
        return labeling_job.stop_waited_job(self.sagemaker, self.ledger, e.input)

    def stop_verification_job(self, e: TaskEnvelope) -> dict[str, Any]:
        return labeling_job.stop_waited_job(self.sagemaker, self.ledger, e.input, purpose="verification")

    def collect_labels(self, e: TaskEnvelope) -> dict[str, Any]:
        verify = str((e.input.get("config") or {}).get("verify", "false")).lower() == "true"
        return collection.collect_labels(self.s3, self.sagemaker, self.ledger, e.input, verification=verify)

    def create_verification_job(self, e: TaskEnvelope) -> dict[str, Any]:
        token = e.require_token()
        return verification.create_verification_job(self.s3, self.sagemaker, self.ledger, self.cfg, e.input, token)

    def create_app_verification_job(self, e: TaskEnvelope) -> dict[str, Any]:
        token = e.require_token()
        return app_verification.create_app_verification_job(
            self._app_store(), self.s3, self.ledger, self.cfg, e.input, token, self.clock()
        )

    def expire_app_verification_job(self, e: TaskEnvelope) -> dict[str, Any]:
        return app_job.expire_app_job(
            self._app_store(), self.s3, self.sfn, self.ledger, e.input, self.clock(), purpose="verification"
        )

    def apply_verification(self, e: TaskEnvelope) -> dict[str, Any]:
        return verification.apply_verification(self.s3, self.sagemaker, self.ledger, e.input)

    def build_dataset(self, e: TaskEnvelope) -> dict[str, Any]:
        return dataset.build_dataset(self.s3, self.ledger, self.cfg, new=e.input["collected"]["labeled"])

    def put_features(self, e: TaskEnvelope) -> dict[str, Any]:
        if not self.cfg.feature_group:
            raise SettingsError("missing environment variable(s): FEATURE_GROUP_NAME")
        run = e.input
        labeled, version = run["collected"]["labeled"], run["dataset"]["version"]
        return features.put_features(self.featurestore, self.ledger, self.cfg.feature_group, labeled, version)

    def start_training(self, e: TaskEnvelope) -> dict[str, Any]:
        extra = e.model_extra or {}
        if not extra.get("training_state_machine"):
            raise TaskError("start_training needs training_state_machine in its envelope")
        return dataset.start_training(
            self.sfn, str(extra["training_state_machine"]), e.input, str(extra.get("started_by") or "")
        )

    def release(self, e: TaskEnvelope) -> dict[str, Any]:
        return release_run(self.ledger, e.input, self.sagemaker, self.app_store)
