"""LabelingDeclineLimit: an image that many labelers declined is settled at once (released as unlabeled with their
reasons, or consolidated from the answers other labelers gave), so it does not hold its job until the tasks'
lifetime ends; the job finishes with the work that was answered (moto, the template's table)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support.labeling_app import RecordingSfn, box, make_store

from loupe import manifests
from loupe.labeling import workforce
from loupe.labeling.answers import AnswerError
from loupe.labeling.config import LABEL_ATTRIBUTE
from loupe.labeling.workforce_jobs import JobImage, create_job, expire_job

T0 = 1_800_000_000.0
JOB = "loupe-c9-dddd"
OUTPUT_KEY = f"labeling/c9/output/{JOB}/manifests/output/output.manifest"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        store = make_store(boto3.resource("dynamodb", region_name="us-east-1"))
        yield {"store": store, "s3": s3, "sfn": RecordingSfn()}


def _create(aws: dict[str, Any], images: int, labelers: int = 1, decline_limit: int = 2) -> None:
    create_job(
        aws["store"],
        JOB,
        "token-c9",
        [JobImage(f"s3://raw/raw/{i}.jpg", f"{i + 9:064x}", 160, 120) for i in range(images)],
        {"0": "scratch"},
        "s3://artifacts/labeling/c9/output/",
        "raw",
        T0,
        labelers_per_image=labelers,
        lifetime_seconds=3600,
        decline_limit=decline_limit,
    )


def _take(aws: dict[str, Any], user: str, now: float = T0) -> dict[str, Any]:
    task = workforce.next_task(aws["store"], user, now)
    assert task is not None, f"{user} got no task"
    return task


def _decline(aws: dict[str, Any], user: str, task: dict[str, Any], reason: str, now: float = T0) -> dict[str, Any]:
    return workforce.decline_task(aws["store"], aws["s3"], aws["sfn"], user, task["assignment_id"], now, reason)


def _answer(aws: dict[str, Any], user: str, task: dict[str, Any], boxes: list[Any]) -> dict[str, Any]:
    store, s3, sfn = aws["store"], aws["s3"], aws["sfn"]
    return workforce.submit_answer(store, s3, sfn, user, task["assignment_id"], {"boxes": boxes}, T0)


def _output(aws: dict[str, Any]) -> list[dict[str, Any]]:
    text = aws["s3"].get_object(Bucket="artifacts", Key=OUTPUT_KEY)["Body"].read().decode()
    return [json.loads(line) for line in text.splitlines()]


def test_an_image_every_labeler_declines_is_released_with_their_reasons_and_the_job_finishes(aws) -> None:
    """Before, an image nobody could answer held its job (and the run, and the demo) until the tasks' lifetime
    ended: ten days by default."""
    _create(aws, images=2, decline_limit=2)
    first = _take(aws, "ann")
    assert first["source_ref"].endswith("/0.jpg")
    assert _decline(aws, "ann", first, "too blurry to tell") == {
        "assignment_id": first["assignment_id"],
        "status": "declined",
        "declined": 1,
    }
    assert aws["store"].item(JOB, 0)["status"] == "labeling"  # one decline of two: still offered to others
    assert _answer(aws, "ann", _take(aws, "ann"), [box(10, 10, 40, 20)])["image"] == "final"  # image 1
    assert aws["sfn"].calls == []

    second = _take(aws, "bob")
    assert second["source_ref"].endswith("/0.jpg")
    out = _decline(aws, "bob", second, "not a metal tag")
    assert out["declined"] == 2 and out["image"] == "released"

    lines = _output(aws)
    assert bool(lines[1].get(LABEL_ATTRIBUTE)) and not lines[0].get(LABEL_ATTRIBUTE)
    reason = lines[0][f"{LABEL_ATTRIBUTE}-metadata"]["failure-reason"]
    assert reason == "declined by 2 labelers (LabelingDeclineLimit 2): not a metal tag; too blurry to tell"
    assert "ann" not in reason and "bob" not in reason  # the decliners stay unnamed
    labels, problems = manifests.parse_output_manifest("\n".join(map(json.dumps, lines)), LABEL_ATTRIBUTE)
    assert problems == [] and [label.failed for label in labels] == [True, False]
    ((kind, call),) = aws["sfn"].calls
    assert kind == "success" and call["taskToken"] == "token-c9"
    assert json.loads(call["output"])["labeled"] == 1 and json.loads(call["output"])["released"] == 1
    assert aws["store"].job(JOB)["status"] == "completed"


def test_a_decline_is_remembered_after_another_labeler_takes_the_image(aws) -> None:
    """Before, the next lease on the image dropped the first decliner's slot: the image went back to them, and
    their decline no longer counted."""
    _create(aws, images=1, decline_limit=3)
    _decline(aws, "ann", _take(aws, "ann"), "")
    _decline(aws, "bob", _take(aws, "bob", T0 + 1), "", T0 + 1)
    assert workforce.next_task(aws["store"], "ann", T0 + 2) is None
    assert workforce.next_task(aws["store"], "bob", T0 + 2) is None
    out = _decline(aws, "cyd", _take(aws, "cyd", T0 + 3), "", T0 + 3)
    assert out["declined"] == 3 and out["image"] == "released"
    reason = _output(aws)[0][f"{LABEL_ATTRIBUTE}-metadata"]["failure-reason"]
    assert reason == "declined by 3 labelers (LabelingDeclineLimit 3): no reason given"
    # the whole job was declined: no label, the token fails as for Ground Truth's job that labeled nothing
    ((kind, call),) = aws["sfn"].calls
    assert kind == "failure" and call["error"] == "LabelingJobFailed"


def test_an_image_with_answers_is_settled_from_them_when_the_others_decline(aws) -> None:
    """LabelersPerImage=2: one labeler answered, two declined: the answer is kept (final, from one labeler)."""
    _create(aws, images=1, labelers=2, decline_limit=2)
    assert _answer(aws, "ann", _take(aws, "ann"), [box(10, 10, 40, 20)])["image"] == "answered"
    _decline(aws, "bob", _take(aws, "bob"), "cannot tell")
    out = _decline(aws, "cyd", _take(aws, "cyd"), "cannot tell")
    assert out["image"] == "final"
    (line,) = _output(aws)
    assert line[LABEL_ATTRIBUTE]["annotations"] == [{"class_id": 0, "left": 10, "top": 10, "width": 40, "height": 20}]
    assert line[f"{LABEL_ATTRIBUTE}-metadata"]["loupe-labelers"] == 1


def test_declines_under_the_limit_are_named_in_the_expiry_reason(aws) -> None:
    _create(aws, images=1, decline_limit=3)
    _decline(aws, "ann", _take(aws, "ann"), "glare")
    expire_job(aws["store"], aws["s3"], aws["sfn"], JOB, T0 + 3600)
    reason = _output(aws)[0][f"{LABEL_ATTRIBUTE}-metadata"]["failure-reason"]
    assert reason.startswith("no labeler answered before the tasks expired at") and reason.endswith(
        "(declined by 1: glare)"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [(None, ""), ({}, ""), ({"reason": "  too\n dark "}, "too dark")],
)
def test_a_decline_takes_no_body_or_a_reason(body: Any, expected: str) -> None:
    assert workforce.decline_reason(body) == expected


@pytest.mark.parametrize(
    "body",
    [{"reason": 3}, {"reason": "x", "boxes": []}, ["reason"], {"reason": "x" * 201}, {"reason": "a\x00b"}],
)
def test_a_bad_decline_body_is_refused_with_400(body: Any) -> None:
    with pytest.raises(AnswerError) as refused:
        workforce.decline_reason(body)
    assert refused.value.status == 400


def test_a_decline_limit_out_of_range_creates_no_job(aws) -> None:
    with pytest.raises(ValueError, match="LabelingDeclineLimit must be 1 to 10, not 0"):
        _create(aws, images=1, decline_limit=0)
    assert aws["store"].job(JOB) is None
