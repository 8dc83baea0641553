"""The configuration handlers see: the environment variables of template.yaml, validated once.

Every function gets the Globals variables; a few get their own (``LABELING_STATE_MACHINE_ARN``, ...). Fields that
a function does not have are ``None`` / defaults, and :func:`require` names the missing variable when a handler
needs it. Read configuration through :func:`load` (cached), never through scattered ``os.environ`` lookups.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The most images one labeling run may claim. A run's Step Functions state carries each image's hash three times
# (the claim, the manifest, the labels: ~200 B an image), and a state over 256 KiB fails the execution with
# States.DataLimitExceeded, which no Catch sees (Step Functions quotas; error handling). 1000 images keep the
# largest state, a 32 KiB error cause included, under the quota: tests/unit/labeling/test_state_size.py measures
# it on the state machine's own ResultPaths. template.yaml's LabelingMaxPerJob MaxValue is the same number.
LABELING_MAX_PER_JOB_BOUND = 1000


class SettingsError(RuntimeError):
    """A required variable is missing or one has an unusable value."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    environment: str = Field("dev", alias="ENVIRONMENT")
    raw_bucket: str | None = Field(None, alias="RAW_BUCKET")
    artifact_bucket: str | None = Field(None, alias="ARTIFACT_BUCKET")
    ledger_table: str | None = Field(None, alias="LEDGER_TABLE")
    idempotency_table: str | None = Field(None, alias="IDEMPOTENCY_TABLE")
    deployments_table: str | None = Field(None, alias="DEPLOYMENTS_TABLE")
    # the labeling app's jobs, images, assignments and answers (loupe.labeling.task_store)
    labeling_tasks_table: str | None = Field(None, alias="LABELING_TASKS_TABLE")
    # the console's user pool and its app client (public identifiers the web app signs in with)
    user_pool_id: str | None = Field(None, alias="USER_POOL_ID")
    user_pool_client_id: str | None = Field(None, alias="USER_POOL_CLIENT_ID")
    notify_topic_arn: str | None = Field(None, alias="NOTIFY_TOPIC_ARN")
    labeling_state_machine_arn: str | None = Field(None, alias="LABELING_STATE_MACHINE_ARN")
    edge_deployment_state_machine_arn: str | None = Field(None, alias="EDGE_DEPLOYMENT_STATE_MACHINE_ARN")
    training_state_machine_arn: str | None = Field(None, alias="TRAINING_STATE_MACHINE_ARN")
    # the console's Loop page: the stack's alarms, comma-separated names
    alarm_names: tuple[str, ...] = Field((), alias="ALARM_NAMES")
    training_pipeline_name: str | None = Field(None, alias="TRAINING_PIPELINE_NAME")
    model_package_group: str | None = Field(None, alias="MODEL_PACKAGE_GROUP")
    feature_group_name: str | None = Field(None, alias="FEATURE_GROUP_NAME")
    thing_group_name: str | None = Field(None, alias="THING_GROUP_NAME")
    labeling_threshold: int = Field(50, alias="LABELING_THRESHOLD", ge=1)
    labeling_max_per_job: int = Field(500, alias="LABELING_MAX_PER_JOB", ge=1, le=LABELING_MAX_PER_JOB_BOUND)
    label_classes: tuple[str, ...] = Field(("scratch",), alias="LABEL_CLASSES")
    workteam_arn: str | None = Field(None, alias="WORKTEAM_ARN")
    input_free_of_pii: bool = Field(False, alias="INPUT_FREE_OF_PII")
    sagemaker_execution_role_arn: str | None = Field(None, alias="SAGEMAKER_EXECUTION_ROLE_ARN")
    drift_alarm_arn: str | None = Field(None, alias="DRIFT_ALARM_ARN")
    aws_region: str = Field("us-east-1", alias="AWS_REGION")
    # the edge deployment's rollout (deployment_tasks; template.yaml parameters)
    rollout_base_rate: int = Field(5, alias="ROLLOUT_BASE_RATE", ge=1, le=1000)  # devices per minute
    rollout_increment_factor: float = Field(2.0, alias="ROLLOUT_INCREMENT_FACTOR", ge=1.1, le=5)
    abort_failure_percent: int = Field(20, alias="ABORT_FAILURE_PERCENT", ge=1, le=100)
    component_update_timeout: int = Field(60, alias="COMPONENT_UPDATE_TIMEOUT")
    inference_component_version: str = Field("", alias="INFERENCE_COMPONENT_VERSION")
    nucleus_component_version: str = Field("", alias="NUCLEUS_COMPONENT_VERSION", pattern=r"^(\d+\.\d+\.\d+)?$")
    # a gate-passing candidate beside production: it runs on every Nth frame (template parameter ShadowEveryNthFrame)
    shadow_every_nth_frame: int = Field(5, alias="SHADOW_EVERY_NTH_FRAME", ge=1, le=1000)

    @field_validator("nucleus_component_version", mode="before")
    @classmethod
    def _strip_version(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("alarm_names", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("label_classes", mode="before")
    @classmethod
    def _split_classes(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = tuple(part.strip() for part in value.split(",") if part.strip())
            if not names:
                raise ValueError("LABEL_CLASSES needs at least one class name")
            if len(set(names)) != len(names):
                raise ValueError(f"LABEL_CLASSES has duplicates: {value!r}")
            return names
        return value

    @property
    def class_map(self) -> dict[str, str]:
        return {str(i): name for i, name in enumerate(self.label_classes)}

    def require(self, *fields: str) -> None:
        missing = [name for name in fields if getattr(self, name) in (None, "")]
        if missing:
            names = ", ".join(str(type(self).model_fields[name].alias) for name in missing)
            raise SettingsError(f"missing environment variable(s): {names}")


def from_mapping(env: Mapping[str, str]) -> Settings:
    """An empty value counts as not set (CloudFormation gives "" for an unset optional parameter such as
    WorkteamArn; the local invoker blanks other functions' variables): the field takes its default."""
    known = {str(f.alias) for f in Settings.model_fields.values()}
    values = {key: value for key, value in env.items() if key in known and value != ""}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(f"invalid configuration: {exc}") from exc


@lru_cache(maxsize=8)
def _cached(items: tuple[tuple[str, str], ...]) -> Settings:
    return from_mapping(dict(items))


def load() -> Settings:
    """Settings from the current environment (cached per distinct environment)."""
    known = {str(f.alias) for f in Settings.model_fields.values()}
    return _cached(tuple(sorted((k, v) for k, v in os.environ.items() if k in known)))
