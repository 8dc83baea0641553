"""Giving claimed images back: a failed run's release (its catch path), and the sweep of claims whose run can no
longer label them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loupe import aws_errors
from loupe.aws_clients import SageMakerLabeling, StepFunctions
from loupe.labeling.app_job import SERVICE as APP_SERVICE
from loupe.labeling.app_job import cancel_app_jobs
from loupe.labeling.task_store import TaskStore
from loupe.ledger import CLAIMED, Ledger

STALE_NO_EXECUTION_SECONDS = 15 * 60
FAILED_REDRIVE_GRACE_SECONDS = 24 * 3600
# Failures no Catch sees and no redrive mends: a redrive reruns the failed state on the same input, so a state
# over the payload quota (States.DataLimitExceeded) fails the same way again. Their claims go back at once.
NOT_REDRIVABLE = ("States.DataLimitExceeded",)


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def release_run(
    ledger: Ledger,
    run: dict[str, Any],
    sagemaker: SageMakerLabeling | None = None,
    app_store: TaskStore | None = None,
) -> dict[str, Any]:
    """The failure path: the run's jobs still in progress are stopped (nobody will read their labels, and the
    images are about to be offered to a new run): Ground Truth's with StopLabelingJob, the labeling app's by
    cancelling them in ``app_store``; then whatever the run still holds goes back to unlabeled, with the failed
    state as the reason."""
    state = run.get("failed_state", "unknown state")
    error = run.get("error") or {}
    reason = f"labeling run failed in {state}: {error.get('Error', '')} {str(error.get('Cause', ''))[:300]}".strip()
    stopped = []
    if app_store is not None:
        stopped += cancel_app_jobs(app_store, ledger, run["claim_id"])
    if sagemaker is not None:
        for name in ledger.claim_jobs(run["claim_id"]):
            if (ledger.get_job(name) or {}).get("service") == APP_SERVICE:
                continue  # the labeling app's: never a Ground Truth call
            try:
                status = sagemaker.describe_labeling_job(LabelingJobName=name)["LabelingJobStatus"]
                if status == "InProgress":
                    sagemaker.stop_labeling_job(LabelingJobName=name)
                    stopped.append(name)
            except Exception as exc:
                if aws_errors.error_code(exc) != "ResourceNotFound":  # never created: nothing to stop
                    raise
    images = list(run.get("images") or [])
    released = ledger.release(images, run["claim_id"], reason)
    return {"released": len(released), "reason": reason, "stopped_jobs": stopped}


def _age_seconds(iso: str | None, now: datetime) -> float:
    if not iso:
        return float("inf")
    return (now - datetime.fromisoformat(iso)).total_seconds()


def sweep_stale_claims(
    ledger: Ledger, sfn: StepFunctions, state_machine_arn: str, now: datetime | None = None
) -> dict[str, list[str]]:
    """Give back claims whose labeling run can no longer label them.

    A run that fails through its Catch releases its own images. These are the other ways a claim can be
    stranded: the execution was aborted (StopExecution runs no Catch) or timed out; it failed with
    States.DataLimitExceeded (no Catch sees it, and a redrive fails again); it failed in another way Catch cannot
    see (States.Runtime) and was not redriven within a day; or it was never started (the trigger died between
    claiming and starting). Returns the released hashes by claim id.
    """
    now = now or datetime.now(UTC)
    claims: dict[str, list[dict[str, Any]]] = {}
    for item in ledger.by_status(CLAIMED):
        claims.setdefault(str(item.get("claim_id", "")), []).append(item)
    released: dict[str, list[str]] = {}
    for claim_id, items in claims.items():
        hashes = [item["sha256"] for item in items]
        newest_claim = min(_age_seconds(item.get("claimed_at"), now) for item in items)
        execution: dict[str, Any] | None
        try:
            execution = sfn.describe_execution(executionArn=execution_arn(state_machine_arn, f"labeling-{claim_id}"))
        except Exception as exc:
            if aws_errors.error_code(exc) != "ExecutionDoesNotExist":
                raise
            execution = None
        if execution is None:
            if newest_claim < STALE_NO_EXECUTION_SECONDS:
                continue
            reason = "the labeling run for this claim never started"
        elif execution["status"] in ("ABORTED", "TIMED_OUT"):
            reason = f"labeling run {execution['status'].lower()}"
        elif execution["status"] == "FAILED" and execution.get("error") in NOT_REDRIVABLE:
            reason = f"labeling run failed with {execution['error']} (a redrive fails the same way)"
        elif execution["status"] == "FAILED":
            stopped = execution.get("stopDate")
            age = (now - stopped).total_seconds() if isinstance(stopped, datetime) else float("inf")
            if age < FAILED_REDRIVE_GRACE_SECONDS:
                continue  # may still be redriven
            reason = "labeling run failed and was not redriven"
        else:
            continue  # RUNNING (or a finished run whose last writes are landing)
        got = ledger.release(hashes, claim_id, reason)
        if got:
            released[claim_id] = got
    return released
