"""Ground Truth labeling job state change -> resume the labeling execution waiting on that job's task token."""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer

from loupe import eventbridge
from loupe import settings as settings_mod
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()

SETTINGS = settings_mod.load()
SETTINGS.require("ledger_table")
sfn = boto3.client("stepfunctions")
ledger = Ledger.from_name(SETTINGS.ledger_table)

TERMINAL_FAILURES = ("Failed", "Stopped")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        change = eventbridge.labeling_job_state_change(event)
    except eventbridge.Ignored as skip:
        logger.info(f"ignored: {skip.reason}")
        return eventbridge.ignored(skip)
    name, status = change.job_name, change.detail.status
    job = ledger.get_job(name)
    if job is None or not job.get("task_token"):
        # another Loupe stack's job in the same account, or a job no execution waits for
        skip = eventbridge.Ignored(f"labeling job {name} is not Loupe's here (no execution of this stack waits for it)")
        logger.info(f"ignored: {skip.reason}")
        return eventbridge.ignored(skip)
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
