"""Ground Truth (LabelingService=GroundTruth): job names, the human task configuration (workforce, built-in
Lambdas), job creation and a finished job's output."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from loupe import aws_errors, manifests
from loupe.aws_clients import S3, SageMakerLabeling
from loupe.labeling.config import (
    DEFAULT_TASK_LIFETIME_SECONDS,
    LabelingConfig,
    LabelingError,
    LabelingJobFailed,
    LabelingJobStopping,
)

# Ground Truth's built-in bounding-box Lambdas live in these accounts (one per region).
_GT_ACCOUNTS = {
    "us-east-1": "432418664414",
    "us-east-2": "266458841044",
    "us-west-2": "081040173940",
    "ca-central-1": "918755190332",
    "eu-west-1": "568282634449",
    "eu-west-2": "487402164563",
    "eu-central-1": "203001061592",
    "ap-northeast-1": "477331159723",
    "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007",
    "ap-southeast-1": "377565633583",
    "ap-southeast-2": "454466003867",
}
# The public workforce (Amazon Mechanical Turk) is one workteam of this account, in every region. Mechanical Turk
# "will permanently close on September 30, 2026" (banner of the Mechanical Turk API reference): Loupe no longer
# offers it (template.yaml's WorkteamArn pattern refuses its ARN; human_task_config refuses it again).
PUBLIC_CROWD = ":394669845002:workteam/public-crowd/"
# LabelingJobDataAttributes.ContentClassifiers: statements about the images that only the deployer can make.
# "FreeOfPersonallyIdentifiableInformation" is declared only when the stack says so (InputFreeOfPersonalInformation).
FREE_OF_PII = "FreeOfPersonallyIdentifiableInformation"
FREE_OF_ADULT_CONTENT = "FreeOfAdultContent"
# How long a task waits for a worker (HumanTaskConfig.TaskAvailabilityLifetimeInSeconds: at most 10 days on a
# private workteam; the run's LabelingTaskLifetimeSeconds, loupe.labeling.config.RunOptions) and how long a worker
# who took it may keep it (TaskTimeLimitInSeconds; the labeling app's lease is as long).
TASK_TIME_LIMIT_SECONDS = 600
# After its last task the job still consolidates the answers and writes its output manifest before it completes.
JOB_WRAP_UP_SECONDS = 86400


def is_public_workforce(workteam_arn: str) -> bool:
    return PUBLIC_CROWD in workteam_arn


def job_name_for(claim_id: str, task_token: str, kind: str = "") -> str:
    """One job per task token: a Lambda retry with the same token finds its job, a redrive makes a new one."""
    token_hash = hashlib.sha256(task_token.encode()).hexdigest()[:8]
    name = f"loupe-{claim_id}-{kind + '-' if kind else ''}{token_hash}"
    return re.sub(r"[^a-zA-Z0-9-]", "-", name)[:63].rstrip("-")


def _builtin_lambdas(region: str, task: str) -> tuple[str, str]:
    account = _GT_ACCOUNTS.get(region)
    if account is None:
        raise LabelingError(f"Ground Truth built-in task Lambdas are not known for region {region}")
    return (
        f"arn:aws:lambda:{region}:{account}:function:PRE-{task}",
        f"arn:aws:lambda:{region}:{account}:function:ACS-{task}",
    )


def wait_seconds(task_lifetime_seconds: int) -> int:
    """How long the run waits for a job's end (its wait states' TimeoutSecondsPath): longer than a task can live
    (its lifetime, then the time limit of a worker who took it at the last moment) plus the job's wrap-up, so the
    job ends on its own (Completed: the expired objects failed, the answered ones labeled) before the run gives up
    on it. A wait that ended with the lifetime stopped jobs that were about to complete."""
    return int(task_lifetime_seconds) + TASK_TIME_LIMIT_SECONDS + JOB_WRAP_UP_SECONDS


def content_classifiers(cfg: LabelingConfig) -> list[str]:
    """The job's ContentClassifiers: the PII statement only when the deployer made it."""
    return [FREE_OF_PII, FREE_OF_ADULT_CONTENT] if cfg.free_of_pii else [FREE_OF_ADULT_CONTENT]


def human_task_config(
    cfg: LabelingConfig,
    task: str,
    ui_uri: str,
    title: str,
    description: str,
    task_lifetime_seconds: int = DEFAULT_TASK_LIFETIME_SECONDS,
) -> dict[str, Any]:
    if not cfg.workteam_arn:
        raise LabelingError(
            "no workforce is configured (WORKTEAM_ARN is empty): deploy with LabelingService=GroundTruth and "
            "WorkteamArn=<private or vendor workteam ARN>, or keep the default LabelingService=Loupe"
        )
    if is_public_workforce(cfg.workteam_arn):
        raise LabelingError(
            "the public workforce (Amazon Mechanical Turk) is closed (September 30, 2026): give a private or vendor "
            "workteam, or use LabelingService=Loupe"
        )
    pre, acs = _builtin_lambdas(cfg.region, task)
    config: dict[str, Any] = {
        "WorkteamArn": cfg.workteam_arn,
        "UiConfig": {"UiTemplateS3Uri": ui_uri},
        "PreHumanTaskLambdaArn": pre,
        "TaskKeywords": ["Images", "bounding box", "quality inspection"],
        "TaskTitle": title,
        "TaskDescription": description,
        "NumberOfHumanWorkersPerDataObject": 1,
        "TaskTimeLimitInSeconds": TASK_TIME_LIMIT_SECONDS,
        "TaskAvailabilityLifetimeInSeconds": int(task_lifetime_seconds),
        "MaxConcurrentTaskCount": 100,
        "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": acs},
    }
    return config


def stop_to_collect(sagemaker: SageMakerLabeling, job_name: str) -> dict[str, Any]:
    """Stop a job the run no longer waits for and hand over what its workers answered: stops it while it runs,
    raises :class:`LabelingJobStopping` until it has stopped (the state machine retries), then returns the job's
    name and end state for :func:`loupe.labeling.collection.collect_labels`."""
    status = sagemaker.describe_labeling_job(LabelingJobName=job_name).get("LabelingJobStatus")
    if status == "InProgress":
        sagemaker.stop_labeling_job(LabelingJobName=job_name)
        status = "Stopping"
    if status in ("Stopping", "Initializing"):
        raise LabelingJobStopping(f"labeling job {job_name} is {status}")
    return {"job_name": job_name, "status": status, "stopped": status == "Stopped"}


def create_job(sagemaker: SageMakerLabeling, request: dict[str, Any]) -> None:
    try:
        sagemaker.create_labeling_job(**request)
    except Exception as exc:
        if aws_errors.error_code(exc) != "ResourceInUse":  # the same token again (a Lambda retry): already ours
            raise


def read_s3_text(s3: S3, uri: str) -> str:
    bucket, key = manifests.split_s3_uri(uri)
    text: str = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    return text


def completed_output(sagemaker: SageMakerLabeling, job_name: str, stopped: bool = False) -> str:
    """The output manifest URI of a completed job (or, with ``stopped``, of a job the run stopped: StopLabelingJob
    puts "any results obtained before the job is stopped" in the output); :class:`LabelingJobFailed` for any other
    status."""
    job = sagemaker.describe_labeling_job(LabelingJobName=job_name)
    status = job.get("LabelingJobStatus")
    if status != "Completed" and not (stopped and status == "Stopped"):
        raise LabelingJobFailed(f"labeling job {job_name} is {status}: {job.get('FailureReason', '')}")
    uri = (job.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri")
    if not uri:
        raise LabelingJobFailed(f"labeling job {job_name} completed without an output manifest")
    return str(uri)
