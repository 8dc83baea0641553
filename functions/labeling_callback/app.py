"""Ground Truth labeling job state change -> resume the labeling execution waiting on that job's task token."""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from loupe import settings as settings_mod
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()

SETTINGS = settings_mod.load()
SETTINGS.require("ledger_table")
sfn = boto3.client("stepfunctions")
ledger = Ledger.from_name(SETTINGS.ledger_table)

TERMINAL_FAILURES = ("Failed", "Stopped")


def job_name_of(event: EventBridgeEvent) -> str:
    detail = event.detail or {}
    if detail.get("LabelingJobName"):
        return str(detail["LabelingJobName"])
    for arn in [detail.get("LabelingJobArn", ""), *event.resources]:
        if arn and ":labeling-job/" in arn:
            return arn.rsplit("/", 1)[-1]
    raise ValueError(f"no labeling job in the event: resources={event.resources}")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: Any) -> dict[str, Any]:
    status = str((event.detail or {}).get("LabelingJobStatus", ""))
    name = job_name_of(event)
    job = ledger.get_job(name)
    if job is None or not job.get("task_token"):
        logger.info("not a Loupe labeling job (or no execution waits for it)", extra={"job": name})
        return {"job_name": name, "status": status, "resumed": False}
    if status not in ("Completed", *TERMINAL_FAILURES):
        return {"job_name": name, "status": status, "resumed": False}
    token = job["task_token"]
    try:
        if status == "Completed":
            sfn.send_task_success(taskToken=token, output=json.dumps({"job_name": name, "status": status}))
        else:
            sfn.send_task_failure(taskToken=token, error="LabelingJobFailed", cause=f"labeling job {name} is {status}")
    except (sfn.exceptions.InvalidToken, sfn.exceptions.TaskTimedOut, sfn.exceptions.TaskDoesNotExist) as exc:
        # a duplicate event, or an execution that stopped waiting: nothing to resume
        logger.warning("task token no longer waits", extra={"job": name, "error": str(exc)})
        return {"job_name": name, "status": status, "resumed": False}
    return {"job_name": name, "status": status, "resumed": True}
