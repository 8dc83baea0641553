"""A labeling run's job in the stack's own labeling app (``LabelingService=Loupe``, the default).

The state machine's ``AppLabelingJob`` state creates the job with its task token (:func:`create_app_job`) and
waits; the labelers work through the console API (:mod:`loupe.labeling.workforce`), and the app answers the token
when every image is settled, with the output manifest Ground Truth would have written
(:func:`loupe.labeling.workforce_jobs.finish_job`). ``CollectLabels`` then reads that manifest with the same code as
a Ground Truth job's (:func:`app_output_uri` is where it looks). When the wait outlasts the tasks' lifetime,
``ExpireAppJob`` (:func:`expire_app_job`) ends the job: answered images are kept, unanswered ones released.

The claim remembers the job in the ledger (``service: loupe``, no task token: the token lives in the app's
table), so that ``ExpireAppJob`` and a failed run's release find it; nothing here calls Ground Truth.
"""

from __future__ import annotations

from typing import Any

from loupe import manifests
from loupe.aws_clients import S3, StepFunctions
from loupe.labeling import workforce_jobs
from loupe.labeling.config import LabelingConfig, LabelingJobFailed, NothingToLabel, RunOptions
from loupe.labeling.groundtruth import job_name_for
from loupe.labeling.task_store import Conflict, TaskStore, job_key
from loupe.labeling.workforce_jobs import JobImage
from loupe.ledger import CLAIMED, Ledger

SERVICE = "loupe"


def create_app_job(
    store: TaskStore, ledger: Ledger, cfg: LabelingConfig, run: dict[str, Any], task_token: str, now: float
) -> dict[str, Any]:
    """Create the run's job in the labeling app: the claimed images of its manifest, ``LabelersPerImage`` and the
    task lifetime from the run's options. The same token again (a Lambda retry) finds the job it created."""
    claim_id = run["claim_id"]
    manifest = run["manifest"]
    options = RunOptions.of(run)
    hashes = list(manifest["images"])
    items = ledger.get_many(hashes)
    images = [
        JobImage(str(items[sha]["image_uri"]), sha, int(items[sha].get("width", 0)), int(items[sha].get("height", 0)))
        for sha in hashes
        if sha in items and items[sha].get("status") == CLAIMED and items[sha].get("claim_id") == claim_id
    ]
    if not images:
        raise NothingToLabel(f"claim {claim_id}: none of its images is still claimed")
    name = job_name_for(claim_id, task_token)
    created = open_app_job(
        store, ledger, cfg, options, name, claim_id, "labeling", task_token, images, manifest["output_uri"], now
    )
    return {**created, "labelers_per_image": options.labelers_per_image}


def open_app_job(
    store: TaskStore,
    ledger: Ledger,
    cfg: LabelingConfig,
    options: RunOptions,
    name: str,
    claim_id: str,
    purpose: str,
    task_token: str,
    images: list[JobImage],
    output_uri: str,
    now: float,
    kind: str = workforce_jobs.LABEL_KIND,
) -> dict[str, Any]:
    """The claim remembers the job before it exists (so a failed run's release always finds it), then the app's
    tasks are created; a refusal of the job's images is the run's ``LabelingJobFailed``."""
    ledger.put_job(name, claim_id=claim_id, purpose=purpose, service=SERVICE, images=[i.sha256 for i in images])
    try:
        return workforce_jobs.create_job(
            store,
            name,
            task_token,
            images,
            cfg.class_map,
            output_uri,
            cfg.raw_bucket,
            now,
            labelers_per_image=options.labelers_per_image,
            lifetime_seconds=options.task_lifetime_seconds,
            decline_limit=options.decline_limit,
            kind=kind,
        )
    except ValueError as exc:
        raise LabelingJobFailed(f"{purpose} job {name}: {exc}") from exc


def _app_jobs(ledger: Ledger, claim_id: str, purpose: str | None = None) -> list[str]:
    """The claim's labeling-app jobs (of one ``purpose``: labeling or verification), newest first."""
    jobs = [(name, ledger.get_job(name) or {}) for name in ledger.claim_jobs(claim_id)]
    ours = [
        (str(job.get("created_at", "")), name)
        for name, job in jobs
        if job.get("service") == SERVICE and purpose in (None, job.get("purpose", "labeling"))
    ]
    return [name for _, name in sorted(ours, reverse=True)]


def app_output_uri(run: dict[str, Any], job_name: str) -> str:
    """Where the app writes the job's output manifest: under the run's own output prefix, as Ground Truth does."""
    prefix = str(run["manifest"]["output_uri"]).rstrip("/")
    return f"{prefix}/{job_name}/manifests/output/output.manifest"


def expire_app_job(
    store: TaskStore,
    s3: S3,
    sfn: StepFunctions,
    ledger: Ledger,
    run: dict[str, Any],
    now: float,
    purpose: str = "labeling",
) -> dict[str, Any]:
    """The run's wait outlasted the tasks' lifetime: end its newest app job of ``purpose`` (labeling, or the
    verification step's), keeping what was answered, and hand the next state (CollectLabels, ApplyVerification) its
    output (a job that finished on its own meanwhile is handed over as it is)."""
    claim_id = run["claim_id"]
    names = _app_jobs(ledger, claim_id, purpose)
    if not names:
        raise LabelingJobFailed(f"claim {claim_id} has no labeling-app job to expire")
    name = names[0]
    job = store.job(name)
    if job is None:
        raise LabelingJobFailed(f"labeling job {name} is not in the labeling app's table")
    if job["status"] in ("open", "finishing"):
        # the run stopped waiting: the job ends now, even before its tasks' lifetime is over (as Ground Truth's
        # StopLabelingJob ends a job at any time, keeping what was answered)
        workforce_jobs.expire_job(store, s3, sfn, name, max(now, float(job["expires_at"])))
        job = store.job(name) or job
    if job["status"] not in ("completed", "failed"):
        raise LabelingJobFailed(f"labeling job {name} is {job['status']} after its expiry")
    return {"job_name": name, "status": job["status"], "output_uri": app_output_uri(run, name), "stopped": True}


def cancel_app_jobs(store: TaskStore, ledger: Ledger, claim_id: str) -> list[str]:
    """A failed run gives its images back: its open app jobs stop handing them out (answers already given stay in
    the table). Returns the jobs cancelled."""
    cancelled = []
    for name in _app_jobs(ledger, claim_id):
        job = store.job(name)
        if job is None or job["status"] != "open":
            continue
        try:
            store.update(
                job_key(name),
                UpdateExpression="SET #st = :cancelled",
                ConditionExpression="#st = :open",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={":cancelled": "cancelled", ":open": "open"},
            )
        except Conflict:
            continue  # its last image was settled meanwhile: it finished on its own
        cancelled.append(name)
    return cancelled


def check_output_uri(run: dict[str, Any], job_name: str, given: str | None) -> str:
    """The output manifest CollectLabels reads for an app job: the one the app wrote for this job under the run's
    prefix; any other location in the token's output is refused."""
    expected = app_output_uri(run, job_name)
    if given and given != expected:
        raise LabelingJobFailed(f"labeling job {job_name}: output {given} is not where the app writes ({expected})")
    manifests.split_s3_uri(expected)
    return expected
