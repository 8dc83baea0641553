"""Feature Store: one record per newly labeled image of a dataset version."""

from __future__ import annotations

import json
import time
from typing import Any

from loupe import manifests
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
        record = manifests.feature_record(
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
