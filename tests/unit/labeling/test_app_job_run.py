"""The labeling run's side of the labeling app (loupe.labeling.app_job), on moto with the template's tables: the job
takes the run's still-claimed images with the run's LabelersPerImage and task lifetime; a failed run's release
cancels the app's job without a Ground Truth call; CollectLabels reads only the output the app wrote for the job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support.labeling_app import RecordingSfn, make_store
from support.stack_tables import template_table_properties

from loupe.labeling import app_job, collection, release, workforce
from loupe.labeling.config import LabelingConfig, LabelingError, LabelingJobFailed, NothingToLabel, RunOptions
from loupe.ledger import Ledger

T0 = 1_800_000_000.0
CLAIM = "20260101t000000-0a0b0c0d"


class Info:
    def __init__(self, sha: str) -> None:
        self.sha256, self.format, self.size, self.width, self.height = sha, "jpg", 10, 64, 48
        self.mode, self.orientation, self.normalized, self.notes = "RGB", 1, None, []


class NoGroundTruth:
    """A SageMaker client no call may reach (the labeling app's runs never call Ground Truth)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"sagemaker.{name} called for a labeling-app run")


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName="ledger", **template_table_properties("LedgerTable"))
        ledger = Ledger(dynamodb.Table("ledger"))
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="art")
        hashes = [f"{i:064x}" for i in range(3)]
        for sha in hashes:
            ledger.record_image(Info(sha), f"s3://raw/raw/{sha}.jpg", f"s3://raw/raw/{sha}.jpg", {"kind": "upload"})
        assert ledger.claim(hashes, CLAIM) == hashes
        yield {"ledger": ledger, "store": make_store(dynamodb), "s3": s3, "hashes": hashes}


def cfg() -> LabelingConfig:
    return LabelingConfig("us-east-1", "raw", "art", "", {"0": "scratch"})


def run(hashes: list[str], labelers: str = "2", lifetime: str = "3600") -> dict[str, Any]:
    return {
        "claim_id": CLAIM,
        "images": hashes,
        "config": {
            "verify": "false",
            "service": "Loupe",
            "labelers_per_image": labelers,
            "task_lifetime_seconds": lifetime,
        },
        "manifest": {"images": hashes, "output_uri": f"s3://art/labeling/{CLAIM}/output/"},
    }


def test_the_job_takes_the_runs_claimed_images_and_options(aws: dict[str, Any]) -> None:
    ledger, store, hashes = aws["ledger"], aws["store"], aws["hashes"]
    ledger.release([hashes[2]], CLAIM, "gone meanwhile")  # no longer this run's: not handed to labelers
    out = app_job.create_app_job(store, ledger, cfg(), run(hashes), "token-1", T0)
    assert out["created"] is True and out["images"] == 2 and out["labelers_per_image"] == 2
    job = store.job(out["job_name"])
    assert job is not None and int(job["labelers_per_image"]) == 2 and int(job["expires_at"]) == int(T0) + 3600
    assert ledger.get_job(out["job_name"])["service"] == "loupe"
    again = app_job.create_app_job(store, ledger, cfg(), run(hashes), "token-1", T0 + 5)  # a Lambda retry
    assert again["job_name"] == out["job_name"] and again["created"] is False


def test_a_run_with_nothing_claimed_or_bad_options_creates_no_job(aws: dict[str, Any]) -> None:
    ledger, store, hashes = aws["ledger"], aws["store"], aws["hashes"]
    with pytest.raises(LabelingError, match="LabelersPerImage must be 1 to 5, not 6"):
        app_job.create_app_job(store, ledger, cfg(), run(hashes, labelers="6"), "token-2", T0)
    with pytest.raises(LabelingError, match="LabelingTaskLifetimeSeconds must be 60"):
        RunOptions.of(run(hashes, lifetime="59"))
    ledger.release(hashes, CLAIM, "given back")
    with pytest.raises(NothingToLabel):
        app_job.create_app_job(store, ledger, cfg(), run(hashes), "token-3", T0)
    assert ledger.claim_jobs(CLAIM) == []


def test_a_failed_runs_release_cancels_the_apps_job_without_ground_truth(aws: dict[str, Any]) -> None:
    """Before, a failed run released its images while the app kept handing them to labelers."""
    ledger, store, hashes = aws["ledger"], aws["store"], aws["hashes"]
    name = app_job.create_app_job(store, ledger, cfg(), run(hashes), "token-4", T0)["job_name"]
    failed = {**run(hashes), "failed_state": "CollectLabels", "error": {"Error": "X", "Cause": "y"}}
    out = release.release_run(ledger, failed, NoGroundTruth(), store)  # type: ignore[arg-type]
    assert out["stopped_jobs"] == [name] and out["released"] == 3
    assert store.job(name)["status"] == "cancelled"
    assert workforce.next_task(store, "ann", T0 + 1) is None  # nobody is handed the released images


def test_collect_labels_reads_only_the_output_the_app_wrote_for_the_job(aws: dict[str, Any]) -> None:
    ledger, store, s3, hashes = aws["ledger"], aws["store"], aws["s3"], aws["hashes"]
    sfn = RecordingSfn()
    name = app_job.create_app_job(store, ledger, cfg(), run(hashes, labelers="1"), "token-5", T0)["job_name"]
    for user in ("ann", "bob", "cyd"):
        task = workforce.next_task(store, user, T0 + 1)
        assert task is not None
        workforce.submit_answer(store, s3, sfn, user, task["assignment_id"], {"boxes": []}, T0 + 2)
    kind, call = sfn.calls[-1]
    assert kind == "success"
    output = json.loads(call["output"])
    labeling = {"job_name": name, "output_uri": output["output_uri"]}
    collected = collection.collect_labels(s3, NoGroundTruth(), ledger, {**run(hashes), "labeling": labeling}, False)  # type: ignore[arg-type]
    assert sorted(collected["labeled"]) == sorted(hashes)
    elsewhere = {"job_name": name, "output_uri": "s3://art/labeling/other-claim/output/x.manifest"}
    with pytest.raises(LabelingJobFailed, match="is not where the app writes"):
        collection.collect_labels(s3, NoGroundTruth(), ledger, {**run(hashes), "labeling": elsewhere}, False)  # type: ignore[arg-type]
