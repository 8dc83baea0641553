"""The labeling state machine's task worker: one event shape ``{"task", "input", "token"?}``, one domain call each."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from botocore.exceptions import ClientError

from loupe import labeling
from loupe import settings as settings_mod
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()

SETTINGS = settings_mod.load()
SETTINGS.require("raw_bucket", "artifact_bucket", "ledger_table")
CONFIG = labeling.LabelingConfig.from_settings(SETTINGS)

s3 = boto3.client("s3")
sagemaker = boto3.client("sagemaker")
featurestore = boto3.client("sagemaker-featurestore-runtime")
sfn = boto3.client("stepfunctions")
ledger = Ledger.from_name(SETTINGS.ledger_table)

THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
}


def _run(task: str, run: dict[str, Any], token: str | None, event: dict[str, Any]) -> dict[str, Any]:
    if task == "write_manifest":
        return labeling.write_manifest(s3, ledger, CONFIG, run)
    if task == "create_job":
        return labeling.create_labeling_job(sagemaker, ledger, CONFIG, run, _token(token))
    if task == "collect_labels":
        verify = str((run.get("config") or {}).get("verify", "false")).lower() == "true"
        return labeling.collect_labels(s3, sagemaker, ledger, run, verification=verify)
    if task == "create_verification_job":
        return labeling.create_verification_job(s3, sagemaker, ledger, CONFIG, run, _token(token))
    if task == "apply_verification":
        return labeling.apply_verification(s3, sagemaker, ledger, run)
    if task == "build_dataset":
        return labeling.build_dataset(s3, ledger, CONFIG, new=run["collected"]["labeled"])
    if task == "put_features":
        SETTINGS.require("feature_group_name")
        return labeling.put_features(
            featurestore, ledger, SETTINGS.feature_group_name, run["collected"]["labeled"], run["dataset"]["version"]
        )
    if task == "start_training":
        return labeling.start_training(sfn, event["training_state_machine"], run, event.get("started_by", ""))
    if task == "release":
        return labeling.release_run(ledger, run, sagemaker)
    raise ValueError(f"unknown labeling task {task!r}")


def _token(token: str | None) -> str:
    if not token:
        raise ValueError("this task waits for a task token (waitForTaskToken) but got none")
    return token


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    task = event.get("task", "")
    run = event.get("input") or {}
    logger.append_keys(task=task, claim_id=run.get("claim_id"))
    try:
        result = _run(task, run, event.get("token"), event)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in THROTTLING:
            raise labeling.ThrottlingException(str(exc)) from exc
        raise
    logger.info("task done", extra={"result": {k: v for k, v in result.items() if k != "images"}})
    return result
