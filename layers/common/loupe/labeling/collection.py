"""A completed labeling job's output manifest (Ground Truth's, or the labeling app's in the same format) read back
into the ledger."""

from __future__ import annotations

from typing import Any

from loupe import manifests
from loupe.aws_clients import S3, SageMakerLabeling
from loupe.labeling.app_job import check_output_uri
from loupe.labeling.config import LABEL_ATTRIBUTE, LOUPE_SERVICE, LabelingJobFailed, RunOptions
from loupe.labeling.groundtruth import completed_output, read_s3_text
from loupe.ledger import Ledger


def collect_labels(
    s3: S3, sagemaker: SageMakerLabeling, ledger: Ledger, run: dict[str, Any], verification: bool
) -> dict[str, Any]:
    """Read the job's output manifest: labeled images are recorded (or held for verification), failed objects
    and images missing from the output go back to unlabeled."""
    claim_id = run["claim_id"]
    job_name = run["labeling"]["job_name"]
    if RunOptions.of(run).service == LOUPE_SERVICE:
        # the labeling app's job: its output manifest, in Ground Truth's format, where the app wrote it
        output_uri = check_output_uri(run, job_name, run["labeling"].get("output_uri"))
    else:
        output_uri = completed_output(sagemaker, job_name, stopped=bool(run["labeling"].get("stopped")))
    labels, problems = manifests.parse_output_manifest(read_s3_text(s3, output_uri), LABEL_ATTRIBUTE)
    expected = list(run["manifest"]["images"])
    items = ledger.get_many(expected)
    by_ref = {item.get("image_uri"): sha for sha, item in items.items()}
    labeled, failed = [], []
    seen = set()
    for label in labels:
        sha = label.sha256 or by_ref.get(label.source_ref)
        if sha is None or sha not in items:
            problems.append(f"{label.source_ref}: not an image of this run")
            continue
        seen.add(sha)
        if label.failed:
            ledger.release([sha], claim_id, f"labeling job {job_name}: {label.failure_reason}")
            failed.append(sha)
            continue
        item = items[sha]
        if (label.width, label.height) != (int(item.get("width", 0)), int(item.get("height", 0))):
            problems.append(
                f"{label.source_ref}: labeled at {label.width}x{label.height}, image is "
                f"{item.get('width')}x{item.get('height')}"
            )
        if verification:
            ok = ledger.set_pending_labels(sha, claim_id, label.annotations(), job_name)
        else:
            ok = ledger.mark_labeled(sha, claim_id, label.annotations(), job_name)
        if ok:
            labeled.append(sha)
    missing = [sha for sha in expected if sha not in seen]
    if missing:
        ledger.release(missing, claim_id, f"labeling job {job_name}: not in the output manifest")
    if not labeled:
        raise LabelingJobFailed(
            f"labeling job {job_name} labeled none of {len(expected)} images ({len(failed)} failed, "
            f"{len(missing)} missing); they are unlabeled again"
        )
    return {
        "job_name": job_name,
        "output_uri": output_uri,
        "labeled": labeled,
        "failed": len(failed),
        "missing": len(missing),
        "problems": problems[:20],
    }
