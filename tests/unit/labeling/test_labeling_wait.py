"""The labeling run's wait for a Ground Truth job, against the job's task lifetime.

A task waits TaskAvailabilityLifetimeInSeconds for a worker, a worker who takes it keeps it TaskTimeLimitInSeconds,
and the job then consolidates and writes its output. The run's wait used to end exactly with the lifetime and
stop the job, whose answered objects were then released unlabeled. Now the wait outlasts all of it, and a wait that
still ends first stops the job and collects what the workers answered (StopLabelingJob keeps "any results obtained
before the job is stopped" in the output)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loupe.labeling import groundtruth, labeling_job
from loupe.labeling.config import LabelingConfig, LabelingJobFailed, LabelingJobStopping

REPO = Path(__file__).resolve().parents[3]
PRIVATE = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/inspectors"
PUBLIC = "arn:aws:sagemaker:us-east-1:394669845002:workteam/public-crowd/default"


def cfg(workteam: str) -> LabelingConfig:
    return LabelingConfig("us-east-1", "raw", "art", "arn:aws:iam::1:role/r", {"0": "scratch"}, workteam_arn=workteam)


def states() -> dict[str, Any]:
    return json.loads((REPO / "statemachines" / "labeling.asl.json").read_text())["States"]


@pytest.mark.parametrize("lifetime", [60, 86400, 864000])
def test_the_wait_outlasts_a_tasks_lifetime_and_time_limit(lifetime: int) -> None:
    """Either service's wait: the run's LabelingTaskLifetimeSeconds reaches Ground Truth's job and the labeling
    app's, and the wait outlasts it, a worker's time limit and a day (issue 19 item 9)."""
    run = {"config": {"service": "GroundTruth", "task_lifetime_seconds": str(lifetime)}}
    c = cfg(PRIVATE)
    options = labeling_job.RunOptions.of(run)
    human = groundtruth.human_task_config(c, "BoundingBox", "s3://art/ui.html", "t", "d", options.task_lifetime_seconds)
    assert human["TaskAvailabilityLifetimeInSeconds"] == lifetime
    task_life = human["TaskAvailabilityLifetimeInSeconds"] + human["TaskTimeLimitInSeconds"]
    wait = groundtruth.wait_seconds(options.task_lifetime_seconds)
    assert wait >= task_life + groundtruth.JOB_WRAP_UP_SECONDS
    s = states()
    assert s["WriteManifest"]["ResultSelector"]["wait_seconds.$"] == "$.Payload.wait_seconds"
    for name in (
        "LabelingJob",
        "AppLabelingJob",
        "VerificationJob",
        "AppVerificationJob",
    ):  # the waits read it; no fixed timeout beside it
        assert s[name]["TimeoutSecondsPath"] == "$.manifest.wait_seconds" and "TimeoutSeconds" not in s[name]


def test_the_public_workforce_is_refused() -> None:
    """Mechanical Turk closed on September 30, 2026: its workteam is refused before any job exists."""
    with pytest.raises(groundtruth.LabelingError, match="Mechanical Turk"):
        groundtruth.human_task_config(cfg(PUBLIC), "BoundingBox", "s3://art/ui.html", "t", "d")


@pytest.mark.parametrize(
    ("wait", "stop", "task", "then"),
    [
        ("LabelingJob", "StopLabelingJob", "stop_job", "CollectLabels"),
        ("VerificationJob", "StopVerificationJob", "stop_verification_job", "ApplyVerification"),
    ],
)
def test_a_wait_that_ends_first_stops_the_job_and_goes_on_with_its_answers(
    wait: str, stop: str, task: str, then: str
) -> None:
    s = states()
    first = s[wait]["Catch"][0]
    assert first["ErrorEquals"] == ["States.Timeout"] and first["Next"] == stop  # before States.ALL -> release
    assert s[stop]["Parameters"]["Payload"]["task"] == task and s[stop]["Next"] == then
    assert s[stop]["ResultPath"] == s[wait]["ResultPath"]  # the next step reads the job where the wait puts it
    retry = s[stop]["Retry"][0]
    assert retry["ErrorEquals"] == ["LabelingJobStopping"]
    waited, interval = 0.0, float(retry["IntervalSeconds"])
    for _ in range(retry["MaxAttempts"]):
        waited += min(interval, retry.get("MaxDelaySeconds", interval))
        interval *= retry["BackoffRate"]
    assert waited >= 3600  # a job gets at least an hour to finish stopping
    assert s[stop]["Catch"][0]["Next"] == s[wait]["Catch"][1]["Next"]  # then the run's failure path


def test_the_apps_wait_expires_its_job_and_goes_on_with_the_answers() -> None:
    """LabelingService=Loupe: the Choice routes to the app's wait; a timeout expires the app's job (answered kept,
    unanswered released) and CollectLabels reads its output as it reads Ground Truth's."""
    s = states()
    assert s["WriteManifest"]["Next"] == "LabelingService?"
    choice = s["LabelingService?"]
    assert choice["Choices"] == [{"Variable": "$.config.service", "StringEquals": "GroundTruth", "Next": "LabelingJob"}]
    assert choice["Default"] == "AppLabelingJob"
    app = s["AppLabelingJob"]
    assert app["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert app["Parameters"]["Payload"] == {"task": "create_app_job", "input.$": "$", "token.$": "$$.Task.Token"}
    assert app["ResultPath"] == s["LabelingJob"]["ResultPath"] and app["Next"] == "CollectLabels"
    timeout, other = app["Catch"]
    assert timeout == {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.wait_error", "Next": "ExpireAppJob"}
    assert other["ErrorEquals"] == ["States.ALL"] and other["Next"] == "LabelingJobFailed"
    expire = s["ExpireAppJob"]
    assert expire["Parameters"]["Payload"]["task"] == "expire_app_job" and expire["Next"] == "CollectLabels"
    assert expire["ResultPath"] == app["ResultPath"] and expire["Catch"][0]["Next"] == "LabelingJobFailed"


def test_the_apps_verification_waits_like_its_labeling_and_feeds_apply_verification() -> None:
    """EnableVerification with LabelingService=Loupe: the verification step goes to the app's verify job (no Ground
    Truth state), waits on its token, and a timeout expires it; both lead to ApplyVerification, which reads
    ``$.verification`` as it reads Ground Truth's."""
    s = states()
    assert s["Verification?"]["Choices"] == [
        {"Variable": "$.config.verify", "StringEquals": "true", "Next": "VerificationService?"}
    ]
    choice = s["VerificationService?"]
    assert choice["Choices"] == [
        {"Variable": "$.config.service", "StringEquals": "GroundTruth", "Next": "VerificationJob"}
    ]
    assert choice["Default"] == "AppVerificationJob"
    app = s["AppVerificationJob"]
    assert app["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert app["Parameters"]["Payload"] == {
        "task": "create_app_verification_job",
        "input.$": "$",
        "token.$": "$$.Task.Token",
    }
    assert app["ResultPath"] == s["VerificationJob"]["ResultPath"] == "$.verification"
    assert app["Next"] == "ApplyVerification"
    timeout, other = app["Catch"]
    assert timeout == {
        "ErrorEquals": ["States.Timeout"],
        "ResultPath": "$.wait_error",
        "Next": "ExpireAppVerificationJob",
    }
    assert other["ErrorEquals"] == ["States.ALL"] and other["Next"] == "VerificationJobFailed"
    expire = s["ExpireAppVerificationJob"]
    assert expire["Parameters"]["Payload"]["task"] == "expire_app_verification_job"
    assert expire["ResultPath"] == "$.verification" and expire["Next"] == "ApplyVerification"
    assert expire["Catch"][0]["Next"] == "VerificationJobFailed"


class Jobs:
    """SageMaker's labeling jobs as the stop sees them."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses, self.stopped = statuses, []

    def describe_labeling_job(self, LabelingJobName: str) -> dict[str, Any]:  # noqa: N803
        status = self.statuses[LabelingJobName]
        return {"LabelingJobName": LabelingJobName, "LabelingJobStatus": status}

    def stop_labeling_job(self, LabelingJobName: str) -> None:  # noqa: N803
        self.stopped.append(LabelingJobName)
        self.statuses[LabelingJobName] = "Stopping"


class ClaimJobs:
    def __init__(self, jobs: dict[str, dict[str, Any]]) -> None:
        self.jobs = jobs

    def claim_jobs(self, claim_id: str) -> list[str]:
        return [n for n, j in self.jobs.items() if j["claim_id"] == claim_id]

    def get_job(self, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)


def test_the_stop_stops_the_claims_newest_job_and_hands_it_over_once_stopped() -> None:
    ledger = ClaimJobs(
        {
            "old": {"claim_id": "c1", "purpose": "labeling", "created_at": "2026-01-01T00:00:00"},
            "new": {"claim_id": "c1", "purpose": "labeling", "created_at": "2026-01-02T00:00:00"},
            "v": {"claim_id": "c1", "purpose": "verification", "created_at": "2026-01-03T00:00:00"},
            "other": {"claim_id": "c2", "purpose": "labeling", "created_at": "2026-01-04T00:00:00"},
        }
    )
    sm = Jobs({"old": "Failed", "new": "InProgress", "v": "InProgress", "other": "InProgress"})
    run = {"claim_id": "c1"}
    with pytest.raises(LabelingJobStopping):  # the state machine retries until it has stopped
        labeling_job.stop_waited_job(sm, ledger, run)  # type: ignore[arg-type]
    assert sm.stopped == ["new"]
    with pytest.raises(LabelingJobStopping, match="new is Stopping"):  # not stopped twice
        labeling_job.stop_waited_job(sm, ledger, run)  # type: ignore[arg-type]
    sm.statuses["new"] = "Stopped"
    got = labeling_job.stop_waited_job(sm, ledger, run)  # type: ignore[arg-type]
    assert got == {"job_name": "new", "status": "Stopped", "stopped": True} and sm.stopped == ["new"]
    sm.statuses["v"] = "Completed"  # it ended on its own meanwhile: nothing to stop, its output is complete
    got = labeling_job.stop_waited_job(sm, ledger, run, purpose="verification")  # type: ignore[arg-type]
    assert got == {"job_name": "v", "status": "Completed", "stopped": False} and sm.stopped == ["new"]
    with pytest.raises(LabelingJobFailed, match="no labeling job"):
        labeling_job.stop_waited_job(sm, ledger, {"claim_id": "c3"})  # type: ignore[arg-type]


def test_only_a_job_the_run_stopped_is_collected_stopped() -> None:
    class Described:
        def describe_labeling_job(self, LabelingJobName: str) -> dict[str, Any]:  # noqa: N803
            out = {"OutputDatasetS3Uri": "s3://art/out/output.manifest"}
            return {"LabelingJobStatus": "Stopped", "LabelingJobOutput": out}

    with pytest.raises(LabelingJobFailed, match="is Stopped"):
        groundtruth.completed_output(Described(), "j")  # type: ignore[arg-type]
    assert groundtruth.completed_output(Described(), "j", stopped=True) == "s3://art/out/output.manifest"  # type: ignore[arg-type]
