"""The optional verification step: a bounding-box verification job over the collected labels, and its verdicts.

Ground Truth's job is created here; the labeling app's (``LabelingService=Loupe``) by
:mod:`loupe.labeling.app_verification`. Both write the same verification output manifest, which
:func:`apply_verification` reads."""

from __future__ import annotations

import json
from typing import Any

from loupe import manifests
from loupe.aws_clients import S3, SageMakerLabeling
from loupe.labeling.app_job import check_output_uri
from loupe.labeling.config import (
    LABEL_ATTRIBUTE,
    LOUPE_SERVICE,
    VERIFICATION_CATEGORIES,
    VERIFY_ATTRIBUTE,
    LabelingConfig,
    LabelingJobFailed,
    NothingToLabel,
    RunOptions,
    s3_uri,
)
from loupe.labeling.groundtruth import (
    completed_output,
    content_classifiers,
    create_job,
    human_task_config,
    job_name_for,
    read_s3_text,
)
from loupe.ledger import Ledger


def create_verification_job(
    s3: S3, sagemaker: SageMakerLabeling, ledger: Ledger, cfg: LabelingConfig, run: dict[str, Any], task_token: str
) -> dict[str, Any]:
    """A bounding-box verification job over the labeled objects of the labeling job's output."""
    claim_id = run["claim_id"]
    human = human_task_config(
        cfg,
        "VerificationBoundingBox",
        run["manifest"]["verify_ui_uri"],
        "Check the scratch boxes",
        "Say whether every scratch is boxed, tightly.",
        RunOptions.of(run).task_lifetime_seconds,
    )
    classifiers = content_classifiers(cfg)
    keep = set(run["collected"]["labeled"])
    lines = []
    for _, obj in manifests.read_lines(read_s3_text(s3, run["collected"]["output_uri"])):
        if obj.get(manifests.SHA_ATTRIBUTE) in keep and LABEL_ATTRIBUTE in obj:
            lines.append(json.dumps(obj, separators=(",", ":")))
    if not lines:
        raise NothingToLabel(f"claim {claim_id}: nothing to verify")
    base = f"labeling/{claim_id}/verification/"
    s3.put_object(Bucket=cfg.artifact_bucket, Key=base + "input.manifest", Body=("\n".join(lines) + "\n").encode())
    categories = {
        "document-version": "2018-11-28",
        "labels": [{"label": c} for c in VERIFICATION_CATEGORIES],
        "auditLabelAttributeName": LABEL_ATTRIBUTE,
    }
    s3.put_object(Bucket=cfg.artifact_bucket, Key=base + "categories.json", Body=json.dumps(categories).encode())
    name = job_name_for(claim_id, task_token, kind="v")
    ledger.put_job(name, task_token=task_token, claim_id=claim_id, purpose="verification")
    request = {
        "LabelingJobName": name,
        "LabelAttributeName": VERIFY_ATTRIBUTE,
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": s3_uri(cfg.artifact_bucket, base + "input.manifest")}},
            "DataAttributes": {"ContentClassifiers": classifiers},
        },
        "OutputConfig": {"S3OutputPath": s3_uri(cfg.artifact_bucket, base + "output/")},
        "RoleArn": cfg.role_arn,
        "LabelCategoryConfigS3Uri": s3_uri(cfg.artifact_bucket, base + "categories.json"),
        "HumanTaskConfig": human,
        "Tags": [{"Key": "loupe:claim-id", "Value": claim_id}],
    }
    create_job(sagemaker, request)
    return {"job_name": name}


def apply_verification(s3: S3, sagemaker: SageMakerLabeling, ledger: Ledger, run: dict[str, Any]) -> dict[str, Any]:
    """Accepted labels become labeled; rejected ones (and unverified ones) go back to unlabeled."""
    claim_id = run["claim_id"]
    job_name = run["verification"]["job_name"]
    if RunOptions.of(run).service == LOUPE_SERVICE:
        # the labeling app's verify job: its output manifest, in Ground Truth's format, where the app wrote it
        output_uri = check_output_uri(run, job_name, run["verification"].get("output_uri"))
    else:
        output_uri = completed_output(sagemaker, job_name, stopped=bool(run["verification"].get("stopped")))
    verdicts = {}
    for _, obj in manifests.read_lines(read_s3_text(s3, output_uri)):
        verdict = manifests.parse_verification_line(obj, VERIFY_ATTRIBUTE)
        if verdict.sha256:
            verdicts[verdict.sha256] = verdict
    labeled, rejected = [], []
    items = ledger.get_many(run["collected"]["labeled"])
    for sha, item in items.items():
        found = verdicts.get(sha)
        pending = json.loads(item.get("pending_annotations") or "null")
        if found is not None and found.accepted and pending is not None:
            if ledger.mark_labeled(sha, claim_id, pending, item.get("labeling_job", ""), verification=found.category):
                labeled.append(sha)
        else:
            why = found.failure_reason or found.category if found else "not verified"
            if found is not None and found.comment:
                why = f"{why}: {found.comment}"
            ledger.release([sha], claim_id, f"verification job {job_name}: {why}")
            rejected.append(sha)
    if not labeled:
        raise LabelingJobFailed(
            f"verification job {job_name} accepted no label; {len(rejected)} images unlabeled again"
        )
    return {
        "job_name": run["collected"]["job_name"],
        "verification_job": job_name,
        "output_uri": run["collected"]["output_uri"],
        "labeled": labeled,
        "rejected": len(rejected),
    }
