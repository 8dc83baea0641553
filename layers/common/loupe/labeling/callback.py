"""A Ground Truth job's state change resumes the labeling execution waiting on that job's task token."""

from __future__ import annotations

import json
from typing import Any

from loupe import aws_errors
from loupe.aws_clients import StepFunctions
from loupe.eventbridge import Ignored, LabelingJobStateChange
from loupe.ledger import Ledger

TERMINAL_FAILURES = ("Failed", "Stopped")
# the token no longer waits: a duplicate event, or an execution that stopped waiting
GONE_TOKEN_CODES = ("InvalidToken", "TaskTimedOut", "TaskDoesNotExist")


def resume_waiting_execution(sfn: StepFunctions, ledger: Ledger, change: LabelingJobStateChange) -> dict[str, Any]:
    """Send the job's outcome to the task token stored when the job was created (``resumed`` says whether one
    still waited). A job no execution of this stack waits for raises :class:`loupe.eventbridge.Ignored`."""
    name, status = change.job_name, change.detail.status
    job = ledger.get_job(name)
    if job is None or not job.get("task_token"):
        # another Loupe stack's job in the same account, or a job no execution waits for
        raise Ignored(f"labeling job {name} is not Loupe's here (no execution of this stack waits for it)")
    if status not in ("Completed", *TERMINAL_FAILURES):
        return {"job_name": name, "status": status, "resumed": False}
    token = job["task_token"]
    try:
        if status == "Completed":
            sfn.send_task_success(taskToken=token, output=json.dumps({"job_name": name, "status": status}))
        else:
            sfn.send_task_failure(taskToken=token, error="LabelingJobFailed", cause=f"labeling job {name} is {status}")
    except Exception as exc:
        if aws_errors.error_code(exc) not in GONE_TOKEN_CODES:
            raise
        return {"job_name": name, "status": status, "resumed": False, "token_gone": aws_errors.error_code(exc)}
    return {"job_name": name, "status": status, "resumed": True}
