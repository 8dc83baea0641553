"""Dataset version N+1 from every labeled image of the ledger, and its hand-over to the training workflow."""

from __future__ import annotations

import json
from typing import Any

from loupe import aws_errors, manifests
from loupe.aws_clients import S3, StepFunctions
from loupe.datasets import Box, LabeledImage, build_manifest, read_version_s3, version_prefix, write_version_s3
from loupe.labeling.config import LabelingConfig, NothingToLabel, s3_uri
from loupe.labeling.release import execution_arn
from loupe.ledger import LABELED, Ledger


def labeled_image(item: dict[str, Any]) -> LabeledImage:
    boxes = [Box.from_dict(a) for a in json.loads(item.get("annotations") or "[]")]
    return LabeledImage(
        sha256=item["sha256"],
        width=int(item["width"]),
        height=int(item["height"]),
        boxes=boxes,
        source_ref=item["image_uri"],
        ext=item.get("format", "jpg"),
        origin=item.get("origin") or {"kind": "upload"},
    )


def build_dataset(s3: S3, ledger: Ledger, cfg: LabelingConfig, new: list[str] | None = None) -> dict[str, Any]:
    """Dataset v(N+1): every labeled image of the ledger (v(N)'s images plus the new labels), written immutably.

    The ledger is the record of labels, so concurrent runs never lose each other's labels; an image's split is
    a function of its hash, so it keeps it in every version.
    """
    parent = ledger.latest_version()
    images = [labeled_image(item) for item in ledger.by_status(LABELED) if item.get("image_uri")]
    if not images:
        raise NothingToLabel("no labeled image in the ledger")
    parent_manifest: dict[str, Any] | None = None
    if parent:
        try:
            parent_manifest = read_version_s3(s3, cfg.artifact_bucket, parent)
        except Exception:  # a missing or damaged parent only costs the server-side copy shortcut
            parent_manifest = None
    if parent and parent_manifest is not None:
        candidate = build_manifest(parent + 1, parent, images, cfg.class_map)
        if candidate["digest"] == parent_manifest["digest"] and candidate["class_map"] == parent_manifest["class_map"]:
            # nothing new (e.g. the same set imported again): the latest version already is this dataset
            return {
                "version": parent,
                "parent": parent_manifest.get("parent"),
                "uri": s3_uri(cfg.artifact_bucket, version_prefix(parent)),
                "counts": parent_manifest["counts"],
                "digest": parent_manifest["digest"],
                "unchanged": True,
            }
    parent_hashes = {e["sha256"] for e in parent_manifest["images"]} if parent_manifest else set()
    version = ledger.reserve_version()

    def copy_source(img: LabeledImage) -> dict[str, str]:
        if img.sha256 in parent_hashes and parent:
            return {"Bucket": cfg.artifact_bucket, "Key": f"{version_prefix(parent)}images/{img.sha256}.{img.ext}"}
        bucket, key = manifests.split_s3_uri(img.source_ref)
        return {"Bucket": bucket, "Key": key}

    manifest = write_version_s3(s3, cfg.artifact_bucket, version, parent, images, copy_source, cfg.class_map)
    ledger.complete_version(version)
    added = [e["sha256"] for e in manifest["images"] if e["sha256"] not in parent_hashes]
    ledger.add_dataset_version(new if new is not None else added, version)
    uri = s3_uri(cfg.artifact_bucket, version_prefix(version))
    # the newest complete version, for scheduled retraining (statemachines/training.asl.json reads it)
    s3.put_object(
        Bucket=cfg.artifact_bucket,
        Key="datasets/latest.json",
        Body=json.dumps({"version": version, "uri": uri, "digest": manifest["digest"]}).encode(),
        ContentType="application/json",
    )
    return {
        "version": version,
        "parent": parent,
        "uri": uri,
        "counts": manifest["counts"],
        "digest": manifest["digest"],
    }


def start_training(
    sfn: StepFunctions, state_machine_arn: str, run: dict[str, Any], started_by: str = ""
) -> dict[str, Any]:
    """Hand the dataset version to the training workflow, once per version: the execution is named after the
    version, so a retried or redriven task (or a run whose labels a concurrent run already published in the
    same version) finds the execution that was already started."""
    dataset = run["dataset"]
    name = f"dataset-v{int(dataset['version'])}"
    payload = {"dataset_version": int(dataset["version"]), "dataset_uri": dataset["uri"], "reason": "labeling"}
    if started_by:
        payload["started_by"] = started_by
    try:
        out = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
        return {"execution_arn": out["executionArn"], "name": name}
    except Exception as exc:
        if aws_errors.error_code(exc) != "ExecutionAlreadyExists":
            raise
        return {"execution_arn": execution_arn(state_machine_arn, name), "name": name, "already_started": True}
