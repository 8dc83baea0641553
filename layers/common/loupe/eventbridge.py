"""The EventBridge events Loupe's handlers receive: parser models with a typed ``detail`` per detail-type, and the
checks that tell this stack's resources from the rest of the account's.

EventBridge offers a rule every event of the account (and AWS services publish state changes of *every* pipeline,
labeling job, model package and alarm). The template's rules filter by name or ARN prefix where EventBridge can;
each handler checks again here, because a rule is not the only way in (a broader rule, a replay from an archive,
a second Loupe stack in the same account, a manual test invoke). A foreign event raises :class:`Ignored`: the
handler logs one line and returns at once, before any AWS call. A Loupe event that does not parse raises
pydantic's ``ValidationError`` naming the field, so it fails loudly and keeps its event in the dead-letter queue.

Event shapes as AWS publishes them (samples in events/aws_*.json):
https://docs.aws.amazon.com/sagemaker/latest/dg/automating-sagemaker-with-eventbridge.html (pipeline execution,
model package), https://docs.aws.amazon.com/sagemaker/latest/dg/sms-monitor-cloud-watch.html (Ground Truth),
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html (alarms),
https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html (S3).
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.middleware_factory import lambda_handler_decorator
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3EventNotificationEventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, model_validator

# Loupe names every Ground Truth job it creates "loupe-..." (loupe.labeling.groundtruth.job_name_for; the IAM
# policy of the labeling tasks function is scoped to labeling-job/loupe-*).
LABELING_JOB_PREFIX = "loupe-"
RAW_PREFIX = "raw/"

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
SCHEDULED_EVENT = "Scheduled Event"
IMAGE_RECORDED = "Image Recorded"
INGEST_SOURCE = "loupe.ingest"


class Ignored(Exception):  # noqa: N818 - an outcome, not an error
    """A well-formed event that is not for this stack (or needs nothing): log it and return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ignored(skip: Ignored) -> dict[str, Any]:
    """What a handler returns for an ignored event."""
    return {"ignored": True, "reason": skip.reason}


_logger = Logger(child=True)


@lambda_handler_decorator
def ignore_foreign(handler: Any, event: Any, context: Any) -> Any:
    """Powertools middleware for a handler of events an account's other resources also emit (another bucket,
    pipeline, package group, labeling job or alarm): an :class:`Ignored` raised anywhere in the handler is one log
    line and :func:`ignored`'s answer, not an error (no retry, no dead letter). Put it outside ``@event_parser``."""
    try:
        return handler(event, context)
    except Ignored as skip:
        _logger.info(f"ignored: {skip.reason}")
        return ignored(skip)


class _Detail(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# ------------------------------------------------------------------ SageMaker pipeline execution status change
class PipelineExecutionDetail(_Detail):
    pipeline_arn: str = Field(alias="pipelineArn", pattern=r"^arn:aws[a-z-]*:sagemaker:[^:]*:\d{12}:pipeline/.+")
    execution_arn: str = Field(alias="pipelineExecutionArn", min_length=1)
    status: Literal["Executing", "Stopping", "Stopped", "Failed", "Succeeded"] = Field(
        alias="currentPipelineExecutionStatus"
    )
    display_name: str = Field("", alias="pipelineExecutionDisplayName")

    @property
    def pipeline_name(self) -> str:
        return self.pipeline_arn.split(":pipeline/", 1)[1].split("/", 1)[0]


class PipelineExecutionStatusChange(EventBridgeModel):
    source: Literal["aws.sagemaker"]
    detail_type: Literal["SageMaker Model Building Pipeline Execution Status Change"] = Field(alias="detail-type")
    detail: PipelineExecutionDetail


def pipeline_status_change(event: dict[str, Any], pipeline_name: str) -> PipelineExecutionStatusChange:
    """The status change of this stack's training pipeline; :class:`Ignored` for any other pipeline's.

    SageMaker writes pipeline names into ARNs lowercased, so names compare without case."""
    return check_pipeline(parse(event=event, model=PipelineExecutionStatusChange), pipeline_name)


def check_pipeline(change: PipelineExecutionStatusChange, pipeline_name: str) -> PipelineExecutionStatusChange:
    """A parsed status change (``@event_parser``) that is this stack's pipeline's; :class:`Ignored` otherwise."""
    name = change.detail.pipeline_name
    if name.lower() != pipeline_name.lower():
        raise Ignored(f"pipeline {name} is not Loupe's (Loupe's is {pipeline_name})")
    return change


# ------------------------------------------------------------------ Ground Truth labeling job state change
class LabelingJobDetail(_Detail):
    status: Literal["Initializing", "InProgress", "Completed", "Failed", "Stopping", "Stopped"] = Field(
        alias="LabelingJobStatus"
    )


class LabelingJobStateChange(EventBridgeModel):
    source: Literal["aws.sagemaker"]
    detail_type: Literal["SageMaker Ground Truth Labeling Job State Change"] = Field(alias="detail-type")
    detail: LabelingJobDetail

    @model_validator(mode="after")
    def _names_one_job(self) -> LabelingJobStateChange:
        jobs = [arn for arn in self.resources if ":labeling-job/" in arn]
        if len(jobs) != 1:
            raise ValueError(f"expected one labeling-job ARN in resources, got {self.resources}")
        return self

    @property
    def job_name(self) -> str:
        return next(arn for arn in self.resources if ":labeling-job/" in arn).rsplit("/", 1)[-1]


def check_labeling_job(change: LabelingJobStateChange) -> LabelingJobStateChange:
    if not change.job_name.startswith(LABELING_JOB_PREFIX):
        raise Ignored(f"labeling job {change.job_name} is not Loupe's (not {LABELING_JOB_PREFIX}*)")
    return change


# ------------------------------------------------------------------ SageMaker model package state change
class ModelPackageDetail(_Detail):
    group: str = Field(alias="ModelPackageGroupName", min_length=1)
    arn: str = Field(alias="ModelPackageArn", pattern=r"^arn:aws[a-z-]*:sagemaker:[^:]*:\d{12}:model-package/.+")
    approval: Literal["Approved", "Rejected", "PendingManualApproval"] = Field(alias="ModelApprovalStatus")
    version: int | None = Field(None, alias="ModelPackageVersion")


class ModelPackageStateChange(EventBridgeModel):
    source: Literal["aws.sagemaker"]
    detail_type: Literal["SageMaker Model Package State Change"] = Field(alias="detail-type")
    detail: ModelPackageDetail


def check_package(change: ModelPackageStateChange, group_name: str) -> ModelPackageStateChange:
    """A parsed package state change (``@event_parser``) of this stack's group; :class:`Ignored` otherwise."""
    if change.detail.group != group_name:
        raise Ignored(f"package group {change.detail.group} is not Loupe's (Loupe's is {group_name})")
    return change


# ------------------------------------------------------------------ CloudWatch alarm state change
class AlarmState(_Detail):
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str = ""


class AlarmDetail(_Detail):
    alarm_name: str = Field(alias="alarmName", min_length=1)
    state: AlarmState
    previous_state: AlarmState | None = Field(None, alias="previousState")


class AlarmStateChange(EventBridgeModel):
    source: Literal["aws.cloudwatch"]
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    detail: AlarmDetail


def check_alarm(change: AlarmStateChange, alarm_arn: str) -> AlarmStateChange:
    name = change.detail.alarm_name
    if alarm_arn not in change.resources:
        raise Ignored(f"alarm {name} is not Loupe's (Loupe's is {alarm_arn})")
    if change.detail.state.value != "ALARM":
        raise Ignored(f"alarm {name} is {change.detail.state.value}, not ALARM")
    return change


# ------------------------------------------------------------------ Loupe's own events and EventBridge schedules
class ImageRecordedDetail(_Detail):
    sha256: str = ""
    origin: dict[str, Any] = Field(default_factory=dict)


class ImageRecorded(_Detail):
    """Put on the default bus by ingest (``loupe.ingest.announcer``) for every newly recorded image. Loupe's own
    event: only the fields the trigger reads are required (the envelope's id, time, account... may be absent)."""

    source: Literal["loupe.ingest"]
    detail_type: Literal["Image Recorded"] = Field(alias="detail-type")
    detail: ImageRecordedDetail = Field(default_factory=ImageRecordedDetail)


class ScheduledEvent(EventBridgeModel):
    """An EventBridge schedule's own event (a rule with no ``Input``)."""

    source: Literal["aws.events"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
    detail: dict[str, Any] = Field(default_factory=dict)


# ------------------------------------------------------------------ S3 Object Created
def check_raw_object(
    change: S3EventNotificationEventBridgeModel, raw_bucket: str
) -> S3EventNotificationEventBridgeModel:
    if change.detail_type != "Object Created" or change.source != "aws.s3":
        raise ValueError(f"expected an aws.s3 Object Created event, got {change.source} {change.detail_type!r}")
    bucket, key = change.detail.bucket.name, change.detail.object.key
    if bucket != raw_bucket:
        raise Ignored(f"bucket {bucket} is not Loupe's (Loupe's raw bucket is {raw_bucket})")
    if not key.startswith(RAW_PREFIX):
        raise Ignored(f"object {key} is not under {RAW_PREFIX} of {bucket}: not Loupe's to ingest")
    return change
