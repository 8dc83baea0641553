"""Feature Store: one record per newly labeled image of a dataset version."""

from __future__ import annotations

import json
import time
from typing import Any

from loupe.aws_clients import FeatureStoreRuntime
from loupe.ledger import LABELED, Ledger


def put_features(
    featurestore: FeatureStoreRuntime, ledger: Ledger, feature_group: str, hashes: list[str], dataset_version: int
) -> dict[str, Any]:
    """One Feature Store record per newly labeled image."""
    written = 0
    now = time.time()
    for sha, item in ledger.get_many(hashes).items():
        if item.get("status") != LABELED:
            continue
        record = feature_record(
            source_ref=item["image_uri"],
            sha256=sha,
            width=item["width"],
            height=item["height"],
            depth=1 if item.get("mode") == "L" else 3,
            annotations=json.loads(item.get("annotations") or "[]"),
            event_time=now,
            labeling_job=f"labeling-job/{item.get('labeling_job', '')}",
            status="APPROVED" if not item.get("verification") else str(item["verification"]),
            dataset_version=dataset_version,
        )
        featurestore.put_record(FeatureGroupName=feature_group, Record=record)
        written += 1
    return {"records": written}


def feature_record(
    source_ref: str,
    sha256: str,
    width: int,
    height: int,
    depth: int,
    annotations: list[dict[str, Any]],
    event_time: float,
    labeling_job: str,
    status: str,
    dataset_version: int,
) -> list[dict[str, str]]:
    """A PutRecord ``Record`` for the labels feature group (annotations as a JSON list of pixel boxes)."""
    values = {
        "source_ref": source_ref,
        "image_sha256": sha256,
        "image_width": str(int(width)),
        "image_height": str(int(height)),
        "image_depth": str(int(depth)),
        "annotations": json.dumps(annotations, separators=(", ", ": ")),
        "event_time": f"{float(event_time):.3f}",
        "labeling_job": labeling_job,
        "status": status,
        "dataset_version": str(int(dataset_version)),
    }
    return [{"FeatureName": k, "ValueAsString": v} for k, v in values.items()]


def record_dict(record: list[dict[str, str]]) -> dict[str, str]:
    return {item["FeatureName"]: item["ValueAsString"] for item in record}
