"""The input of a labeling run (manifest, label categories, worker UI templates) and its Ground Truth
bounding-box job (the labeling app's job: :mod:`loupe.labeling.app_job`)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from loupe import manifests
from loupe.aws_clients import S3, SageMakerLabeling
from loupe.labeling.config import (
    LABEL_ATTRIBUTE,
    UI_TEMPLATE,
    VERIFY_UI_TEMPLATE,
    LabelingConfig,
    LabelingJobFailed,
    NothingToLabel,
    RunOptions,
    s3_uri,
)
from loupe.labeling.groundtruth import (
    content_classifiers,
    create_job,
    human_task_config,
    job_name_for,
    stop_to_collect,
    wait_seconds,
)
from loupe.ledger import CLAIMED, Ledger


def _claimed_items(ledger: Ledger, claim_id: str, hashes: list[str]) -> list[dict[str, Any]]:
    items = ledger.get_many(hashes)
    return [
        items[sha]
        for sha in hashes
        if sha in items and items[sha].get("status") == CLAIMED and items[sha].get("claim_id") == claim_id
    ]


def _put_ui_templates(s3: S3, cfg: LabelingConfig) -> dict[str, str]:
    out = {}
    for name in (UI_TEMPLATE, VERIFY_UI_TEMPLATE):
        body = resources.files("loupe").joinpath("ui", name).read_bytes()
        key = f"labeling/ui/{name}"
        s3.put_object(Bucket=cfg.artifact_bucket, Key=key, Body=body, ContentType="text/html")
        out[name] = s3_uri(cfg.artifact_bucket, key)
    return out


def write_manifest(s3: S3, ledger: Ledger, cfg: LabelingConfig, run: dict[str, Any]) -> dict[str, Any]:
    claim_id = run["claim_id"]
    items = _claimed_items(ledger, claim_id, list(run.get("images") or []))[: cfg.max_per_job]
    if not items:
        raise NothingToLabel(f"claim {claim_id}: none of its images is still claimed")
    base = f"labeling/{claim_id}/"
    lines = [manifests.input_line(item["image_uri"], item["sha256"]) for item in items]
    s3.put_object(Bucket=cfg.artifact_bucket, Key=base + "input.manifest", Body=("\n".join(lines) + "\n").encode())
    s3.put_object(
        Bucket=cfg.artifact_bucket,
        Key=base + "categories.json",
        Body=json.dumps(manifests.category_config(cfg.class_map)).encode(),
    )
    ui = _put_ui_templates(s3, cfg)
    return {
        "manifest_uri": s3_uri(cfg.artifact_bucket, base + "input.manifest"),
        "categories_uri": s3_uri(cfg.artifact_bucket, base + "categories.json"),
        "ui_uri": ui[UI_TEMPLATE],
        "verify_ui_uri": ui[VERIFY_UI_TEMPLATE],
        "output_uri": s3_uri(cfg.artifact_bucket, base + "output/"),
        "count": len(items),
        "images": [item["sha256"] for item in items],
        # the wait of either service's job: the tasks' lifetime, a worker's time limit, a day of wrap-up
        "wait_seconds": wait_seconds(RunOptions.of(run).task_lifetime_seconds),
    }


def create_labeling_job(
    sagemaker: SageMakerLabeling, ledger: Ledger, cfg: LabelingConfig, run: dict[str, Any], task_token: str
) -> dict[str, Any]:
    claim_id = run["claim_id"]
    manifest = run["manifest"]
    human = human_task_config(
        cfg,
        "BoundingBox",
        manifest["ui_uri"],
        "Draw a box around every scratch",
        "Draw one tight box around each scratch on the metal tag. Submit with no boxes if there is none.",
        RunOptions.of(run).task_lifetime_seconds,
    )
    classifiers = content_classifiers(cfg)
    name = job_name_for(claim_id, task_token)
    # the token is stored before the job exists, so the state-change event can never arrive before it
    ledger.put_job(name, task_token=task_token, claim_id=claim_id, purpose="labeling", images=manifest["images"])
    request = {
        "LabelingJobName": name,
        "LabelAttributeName": LABEL_ATTRIBUTE,
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": manifest["manifest_uri"]}},
            "DataAttributes": {"ContentClassifiers": classifiers},
        },
        "OutputConfig": {"S3OutputPath": manifest["output_uri"]},
        "RoleArn": cfg.role_arn,
        "LabelCategoryConfigS3Uri": manifest["categories_uri"],
        "StoppingConditions": {"MaxPercentageOfInputDatasetLabeled": 100},
        "HumanTaskConfig": human,
        "Tags": [{"Key": "loupe:claim-id", "Value": claim_id}],
    }
    create_job(sagemaker, request)
    return {"job_name": name}


def stop_waited_job(
    sagemaker: SageMakerLabeling, ledger: Ledger, run: dict[str, Any], purpose: str = "labeling"
) -> dict[str, Any]:
    """The run's wait for its job ended before the job did: stop the claim's newest job of ``purpose``
    (``labeling`` or ``verification``) and keep what its workers answered, which the next step (CollectLabels,
    ApplyVerification) reads from the stopped job's output; what nobody answered goes back to unlabeled there."""
    claim_id = run["claim_id"]
    jobs = [(name, ledger.get_job(name) or {}) for name in ledger.claim_jobs(claim_id)]
    newest = sorted(
        ((str(job.get("created_at", "")), name) for name, job in jobs if job.get("purpose") == purpose),
        reverse=True,
    )
    if not newest:
        raise LabelingJobFailed(f"claim {claim_id} has no {purpose} job to stop")
    return stop_to_collect(sagemaker, newest[0][1])
