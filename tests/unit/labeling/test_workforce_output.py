"""A Loupe labeling job to its end (moto S3 + DynamoDB): consolidated or reviewed images, the output manifest in
Ground Truth's bounding-box shape (read back by ``loupe.manifests`` as ``collect_labels`` reads it), the task token
answered, and expiry that keeps what was answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support.labeling_app import RecordingSfn, box, make_store

from loupe import manifests
from loupe.datasets import Box
from loupe.labeling import workforce
from loupe.labeling.answers import AnswerError
from loupe.labeling.config import LABEL_ATTRIBUTE
from loupe.labeling.workforce_jobs import JobImage, create_job, expire_job

T0 = 1_800_000_000.0
CLASSES = {"0": "scratch"}
JOB = "loupe-c7-bbbb"
OUTPUT_KEY = f"labeling/c7/output/{JOB}/manifests/output/output.manifest"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        store = make_store(boto3.resource("dynamodb", region_name="us-east-1"))
        yield {"store": store, "s3": s3, "sfn": RecordingSfn()}


def _create(aws: dict[str, Any], images: int, labelers: int, prefill: list[dict[str, Any]] | None = None) -> None:
    create_job(
        aws["store"],
        JOB,
        "token-c7",
        [JobImage(f"s3://raw/raw/{i}.jpg", f"{i + 1:064x}", 160, 120, prefill or []) for i in range(images)],
        CLASSES,
        "s3://artifacts/labeling/c7/output/",
        "raw",
        T0,
        labelers_per_image=labelers,
        lifetime_seconds=3600,
    )


def _label(aws: dict[str, Any], user: str, boxes: list[dict[str, Any]], now: float = T0) -> dict[str, Any]:
    task = workforce.next_task(aws["store"], user, now)
    assert task is not None, f"{user} got no task"
    return workforce.submit_answer(
        aws["store"], aws["s3"], aws["sfn"], user, task["assignment_id"], {"boxes": boxes}, now
    )


def _output(aws: dict[str, Any]) -> list[dict[str, Any]]:
    text = aws["s3"].get_object(Bucket="artifacts", Key=OUTPUT_KEY)["Body"].read().decode()
    return [json.loads(line) for line in text.splitlines()]


def test_two_labelers_who_agree_give_ground_truths_line_and_the_token_succeeds(aws: dict[str, Any]) -> None:
    _create(aws, images=1, labelers=2)
    assert _label(aws, "ann", [box(10, 10, 40, 20)])["image"] == "answered"
    assert aws["sfn"].calls == []  # one answer of two: nothing settled yet
    assert _label(aws, "bob", [box(12, 11, 40, 20)])["image"] == "final"

    (line,) = _output(aws)
    # the same keys, in the same places, as the line Ground Truth writes (loupe.manifests.output_line), plus the
    # agreement in the metadata
    reference = manifests.output_line(
        "s3://raw/raw/0.jpg", LABEL_ATTRIBUTE, [], 160, 120, 3, CLASSES, JOB, extra={manifests.SHA_ATTRIBUTE: "x"}
    )
    assert set(line) == set(reference)
    meta = line[f"{LABEL_ATTRIBUTE}-metadata"]
    assert set(meta) == set(reference[f"{LABEL_ATTRIBUTE}-metadata"]) | {
        "loupe-agreement",
        "loupe-labelers",
        "loupe-final-by",
    }
    assert meta["job-name"] == f"labeling-job/{JOB}" and meta["type"] == "groundtruth/object-detection"
    assert meta["loupe-labelers"] == 2 and meta["loupe-final-by"] == "labelers" and 0.9 < meta["loupe-agreement"] <= 1
    assert line[LABEL_ATTRIBUTE]["annotations"] == [{"class_id": 0, "left": 11, "top": 10.5, "width": 40, "height": 20}]

    labels, problems = manifests.parse_output_manifest("\n".join(json.dumps(x) for x in [line]), LABEL_ATTRIBUTE)
    assert problems == []
    assert labels[0].boxes == [Box(0, 11, 10.5, 40, 20)] and labels[0].sha256 == f"{1:064x}"
    assert (labels[0].width, labels[0].height) == (160, 120) and not labels[0].failed

    ((kind, call),) = aws["sfn"].calls
    assert kind == "success" and call["taskToken"] == "token-c7"
    assert json.loads(call["output"]) == {
        "job_name": JOB,
        "status": "Completed",
        "output_uri": f"s3://artifacts/{OUTPUT_KEY}",
        "labeled": 1,
        "released": 0,
    }
    assert aws["store"].job(JOB)["status"] == "completed"


def test_a_disagreement_waits_for_a_reviewer_whose_answer_is_final(aws: dict[str, Any]) -> None:
    _create(aws, images=1, labelers=2)
    _label(aws, "ann", [box(10, 10, 40, 20)])
    assert _label(aws, "bob", [box(100, 60, 30, 30)])["image"] == "review"
    assert aws["sfn"].calls == []

    # a labeler of the image does not review it; another reviewer does
    assert workforce.next_review(aws["store"], "ann", T0) is None
    item = workforce.next_review(aws["store"], "rev", T0)
    assert item is not None and item["reason"].startswith("2 of 2 boxes")
    assert sorted(len(a) for a in item["answers"]) == [1, 1] and len(item["suggestion"]) == 2
    # only the reviewer who holds it may answer
    with pytest.raises(AnswerError) as other:
        workforce.submit_review(aws["store"], aws["s3"], aws["sfn"], "eve", item["item_id"], {"boxes": []}, T0)
    assert other.value.status == 409
    with pytest.raises(AnswerError) as bad:
        workforce.submit_review(
            aws["store"], aws["s3"], aws["sfn"], "rev", item["item_id"], {"boxes": [box(0, 0, 200, 10)]}, T0
        )
    assert bad.value.status == 400
    done = workforce.submit_review(
        aws["store"], aws["s3"], aws["sfn"], "rev", item["item_id"], {"boxes": [box(100, 60, 30, 30)]}, T0 + 1
    )
    assert done == {"item_id": item["item_id"], "status": "final", "boxes": 1}
    with pytest.raises(AnswerError) as again:
        workforce.submit_review(aws["store"], aws["s3"], aws["sfn"], "rev", item["item_id"], {"boxes": []}, T0 + 2)
    assert again.value.status == 409

    (line,) = _output(aws)
    meta = line[f"{LABEL_ATTRIBUTE}-metadata"]
    assert line[LABEL_ATTRIBUTE]["annotations"] == [{"class_id": 0, "left": 100, "top": 60, "width": 30, "height": 30}]
    assert meta["loupe-final-by"] == "reviewer" and meta["loupe-agreement"] == 0.5
    assert [kind for kind, _ in aws["sfn"].calls] == ["success"]


def test_prefilled_boxes_reach_the_labeler_and_bad_ones_are_left_out(aws: dict[str, Any]) -> None:
    _create(aws, images=1, labelers=1, prefill=[box(5, 5, 20, 20), box(150, 5, 20, 20), box(5, 5, 0.5, 9)])
    task = workforce.next_task(aws["store"], "ann", T0)
    assert task is not None and task["prefill"] == [box(5, 5, 20, 20)]


def test_expiry_keeps_answered_images_and_releases_the_rest_with_a_reason(aws: dict[str, Any]) -> None:
    _create(aws, images=3, labelers=2)
    # image 0: both answered and agree (final before expiry); image 1: one answer of two; image 2: nobody
    _label(aws, "ann", [box(10, 10, 40, 20)])
    _label(aws, "bob", [box(10, 10, 40, 20)])
    _label(aws, "ann", [])
    assert expire_job(aws["store"], aws["s3"], aws["sfn"], JOB, T0 + 100) == {
        "job_name": JOB,
        "expired": False,
        "status": "open",
    }
    out = expire_job(aws["store"], aws["s3"], aws["sfn"], JOB, T0 + 3600)
    assert out["settled"] == {"final": 1, "released": 1}

    lines = _output(aws)
    assert [bool(line.get(LABEL_ATTRIBUTE)) for line in lines] == [True, True, False]
    assert lines[1][f"{LABEL_ATTRIBUTE}-metadata"]["loupe-labelers"] == 1  # kept from the one answer it had
    reason = lines[2][f"{LABEL_ATTRIBUTE}-metadata"]["failure-reason"]
    assert reason.startswith("no labeler answered before the tasks expired at")
    labels, problems = manifests.parse_output_manifest("\n".join(map(json.dumps, lines)), LABEL_ATTRIBUTE)
    assert problems == [] and [label.failed for label in labels] == [False, False, True]
    ((kind, call),) = aws["sfn"].calls
    assert kind == "success" and json.loads(call["output"])["released"] == 1
    assert len(aws["store"].answers(JOB, 0)) == 2  # answers stay in the table


def test_an_unresolved_disagreement_at_expiry_is_released_and_a_job_with_no_label_fails(aws: dict[str, Any]) -> None:
    _create(aws, images=1, labelers=2)
    _label(aws, "ann", [box(10, 10, 40, 20)])
    _label(aws, "bob", [])
    expire_job(aws["store"], aws["s3"], aws["sfn"], JOB, T0 + 3600)
    (line,) = _output(aws)
    assert "no reviewer resolved it" in line[f"{LABEL_ATTRIBUTE}-metadata"]["failure-reason"]
    ((kind, call),) = aws["sfn"].calls
    assert kind == "failure" and call["error"] == "LabelingJobFailed" and "labeled none of its 1" in call["cause"]
    assert aws["store"].job(JOB)["status"] == "failed"
    assert len(aws["store"].answers(JOB, 0)) == 2


def test_a_retried_create_finds_its_job(aws: dict[str, Any]) -> None:
    _create(aws, images=2, labelers=1)
    _label(aws, "ann", [])
    _create(aws, images=2, labelers=1)  # the same token again (a Lambda retry): nothing is reset
    item = aws["store"].item(JOB, 0)
    assert item is not None and item["status"] == "final"
    assert aws["store"].job(JOB)["total"] == 2
