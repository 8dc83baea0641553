"""The verification step in the stack's own labeling app (``LabelingService=Loupe``, ``EnableVerification=true``).

The state machine's ``AppVerificationJob`` state creates a job of kind ``verify`` (:func:`create_app_verification_job`)
with its task token and waits, as ``AppLabelingJob`` does: each image the labeling job labeled is shown with its new
boxes to ``LabelersPerImage`` verifiers through the console API (``GET /labeling/tasks/next`` hands them out beside
labeling tasks), who accept or reject them with a reason. Nobody verifies an image they labeled or reviewed (so a
team verifying needs more people than ``LabelersPerImage``; otherwise those images wait until the tasks expire and
go back to unlabeled). When every image is settled the app writes the
verification output manifest Ground Truth's bounding-box verification writes (:mod:`loupe.labeling.verdicts`) and
answers the token; ``ApplyVerification`` reads it with the same code as Ground Truth's. When the wait outlasts the
tasks' lifetime, ``ExpireAppVerificationJob`` ends the job (:func:`loupe.labeling.app_job.expire_app_job` with
``purpose="verification"``): verdicts given are kept, unverified images go back to unlabeled.
"""

from __future__ import annotations

import json
from typing import Any

from loupe import manifests
from loupe.aws_clients import S3
from loupe.labeling.app_job import check_output_uri, open_app_job
from loupe.labeling.config import LABEL_ATTRIBUTE, LabelingConfig, NothingToLabel, RunOptions
from loupe.labeling.groundtruth import job_name_for, read_s3_text
from loupe.labeling.task_store import TaskStore
from loupe.labeling.workforce_jobs import VERIFY_KIND, JobImage
from loupe.ledger import CLAIMED, Ledger


def _shown(annotations: list[dict[str, Any]], class_map: dict[str, str]) -> list[dict[str, Any]]:
    """Ledger annotations (``class_id``) in the answer shape a verifier is shown (``label``)."""
    return [
        {
            "label": class_map.get(str(a["class_id"]), str(a["class_id"])),
            "left": a["left"],
            "top": a["top"],
            "width": a["width"],
            "height": a["height"],
        }
        for a in annotations
    ]


def _labelers(store: TaskStore, job_name: str) -> dict[str, set[str]]:
    """sha256 -> the people whose answers (or review) made the labeling job's label of that image."""
    out: dict[str, set[str]] = {}
    for item in store.items(job_name):
        people = out.setdefault(str(item["sha256"]), set())
        people.update(str(row["user"]) for row in store.answers(job_name, int(item["index"])) if row.get("user"))
    return out


def create_app_verification_job(
    store: TaskStore, s3: S3, ledger: Ledger, cfg: LabelingConfig, run: dict[str, Any], task_token: str, now: float
) -> dict[str, Any]:
    """A verify job over the images CollectLabels holds for verification: the boxes shown are the labels that
    ApplyVerification will record when accepted (the ledger's pending annotations); each image's line of the
    labeling output travels to its verification line; nobody is handed an image they labeled or reviewed. The same
    token again (a Lambda retry) finds its job."""
    claim_id = run["claim_id"]
    collected = run["collected"]
    options = RunOptions.of(run)
    output_uri = check_output_uri(run, collected["job_name"], collected.get("output_uri"))
    keep = set(collected["labeled"])
    items = ledger.get_many(list(keep))
    labelers = _labelers(store, collected["job_name"])
    images = []
    for _, obj in manifests.read_lines(read_s3_text(s3, output_uri)):
        sha = str(obj.get(manifests.SHA_ATTRIBUTE) or "")
        item = items.get(sha) if sha in keep else None
        if item is None or LABEL_ATTRIBUTE not in obj:
            continue
        if item.get("status") != CLAIMED or item.get("claim_id") != claim_id or not item.get("pending_annotations"):
            continue
        pending = json.loads(str(item["pending_annotations"]))
        images.append(
            JobImage(
                str(obj["source-ref"]),
                sha,
                int(item.get("width", 0)),
                int(item.get("height", 0)),
                verify=_shown(pending, cfg.class_map),
                base=obj,
                labeled_by=sorted(labelers.get(sha, ())),
            )
        )
    if not images:
        raise NothingToLabel(f"claim {claim_id}: nothing to verify")
    name = job_name_for(claim_id, task_token, kind="v")
    created = open_app_job(
        store,
        ledger,
        cfg,
        options,
        name,
        claim_id,
        "verification",
        task_token,
        images,
        run["manifest"]["output_uri"],
        now,
        VERIFY_KIND,
    )
    return {**created, "verifiers_per_image": options.labelers_per_image}
