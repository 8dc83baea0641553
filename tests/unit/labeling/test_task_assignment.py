"""Assignments in the labeling app's table (moto, the template's schema): an image goes to at most
LabelersPerImage labelers, never twice to one, a lease expires, and a submitted answer is never taken twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support.labeling_app import RecordingSfn, box, make_store

from loupe.labeling import workforce
from loupe.labeling.answers import AnswerError
from loupe.labeling.task_store import TaskStore
from loupe.labeling.workforce_jobs import LEASE_SECONDS, JobImage, create_job

T0 = 1_800_000_000.0
CLASSES = {"0": "scratch"}
BUCKET = "raw-bucket"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        store = make_store(boto3.resource("dynamodb", region_name="us-east-1"))
        yield {"store": store, "s3": s3, "sfn": RecordingSfn()}


def _job(
    store: TaskStore, labelers: int = 2, images: int = 1, name: str = "loupe-c1-aaaa", decline_limit: int = 2
) -> str:
    create_job(
        store,
        name,
        "token-" + name,
        [JobImage(f"s3://{BUCKET}/raw/{i}.jpg", f"{i:064x}", 160, 120) for i in range(images)],
        CLASSES,
        "s3://artifacts/labeling/c1/output/",
        BUCKET,
        T0,
        labelers_per_image=labelers,
        lifetime_seconds=3600,
        decline_limit=decline_limit,
    )
    return name


def test_an_image_goes_to_labelers_per_image_labelers_and_never_twice_to_one(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=2)
    ann = workforce.next_task(store, "ann", T0)
    assert ann is not None and ann["source_ref"] == f"s3://{BUCKET}/raw/0.jpg" and ann["labels"] == ["scratch"]
    # asking again returns the same lease, not a second slot
    assert workforce.next_task(store, "ann", T0 + 1) == ann
    bob = workforce.next_task(store, "bob", T0 + 2)
    assert bob is not None and bob["assignment_id"] != ann["assignment_id"]
    assert workforce.next_task(store, "cyd", T0 + 3) is None
    item = store.item("loupe-c1-aaaa", 0)
    assert item is not None and sorted(item["slots"]) == ["ann", "bob"]


def test_an_answered_image_is_not_handed_to_its_labeler_again(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=2, images=2)
    first = workforce.next_task(store, "ann", T0)
    assert first is not None
    workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", first["assignment_id"], {"boxes": []}, T0 + 5)
    second = workforce.next_task(store, "ann", T0 + 6)
    assert second is not None and second["source_ref"].endswith("/1.jpg")
    workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", second["assignment_id"], {"boxes": []}, T0 + 7)
    assert workforce.next_task(store, "ann", T0 + 8) is None


def test_a_claim_that_lost_the_race_takes_no_slot(aws: dict[str, Any]) -> None:
    """Two labelers read the image when it had both slots free; a third claims from that stale read after the other
    two took them: the version condition refuses it and the re-read sees no free slot."""
    store = aws["store"]
    _job(store, labelers=2)
    stale = store.item("loupe-c1-aaaa", 0)
    assert workforce.next_task(store, "ann", T0) and workforce.next_task(store, "bob", T0)

    class StaleOnce(TaskStore):
        served = False

        def item(self, job_name: str, index: int) -> dict[str, Any] | None:
            if not self.served:
                self.served = True
                return stale
            return super().item(job_name, index)

    assert workforce.next_task(StaleOnce(store.table), "cyd", T0 + 1) is None
    item = store.item("loupe-c1-aaaa", 0)
    assert item is not None and sorted(item["slots"]) == ["ann", "bob"]


def test_an_expired_lease_frees_the_slot_and_its_late_answer_is_refused(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=1)
    ann = workforce.next_task(store, "ann", T0)
    assert ann is not None
    assert workforce.next_task(store, "bob", T0 + LEASE_SECONDS - 1) is None
    bob = workforce.next_task(store, "bob", T0 + LEASE_SECONDS + 1)
    assert bob is not None
    with pytest.raises(AnswerError) as gone:
        workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", ann["assignment_id"], {"boxes": []}, T0 + 700)
    assert gone.value.status == 410 and "handed to another labeler" in gone.value.message
    # bob's answer is taken, and the image is final with his boxes
    done = workforce.submit_answer(
        store, aws["s3"], aws["sfn"], "bob", bob["assignment_id"], {"boxes": [box(1, 1, 9, 9)]}, T0 + 701
    )
    assert done["image"] == "final"


def test_a_late_answer_is_kept_while_nobody_else_took_the_image(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=1)
    ann = workforce.next_task(store, "ann", T0)
    assert ann is not None
    out = workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", ann["assignment_id"], {"boxes": []}, T0 + 3000)
    assert out["status"] == "answered" and out["image"] == "final"


def test_double_submit_is_409_and_keeps_the_first_answer(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=2)
    ann = workforce.next_task(store, "ann", T0)
    assert ann is not None
    workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", ann["assignment_id"], {"boxes": [box(1, 1, 9, 9)]}, T0)
    with pytest.raises(AnswerError) as again:
        workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", ann["assignment_id"], {"boxes": []}, T0 + 1)
    assert again.value.status == 409 and "already answered" in again.value.message
    answers = store.answers("loupe-c1-aaaa", 0)
    assert len(answers) == 1 and '"left": 1.0' in answers[0]["boxes_json"]
    item = store.item("loupe-c1-aaaa", 0)
    assert item is not None and item["answers"] == 1


def test_a_bad_answer_changes_nothing_and_the_assignment_still_takes_a_good_one(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=1)
    ann = workforce.next_task(store, "ann", T0)
    assert ann is not None
    with pytest.raises(AnswerError) as bad:
        workforce.submit_answer(
            store, aws["s3"], aws["sfn"], "ann", ann["assignment_id"], {"boxes": [box(150, 1, 20, 9)]}, T0
        )
    assert bad.value.status == 400
    assert store.answers("loupe-c1-aaaa", 0) == []
    out = workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", ann["assignment_id"], {"boxes": []}, T0 + 1)
    assert out["image"] == "final"


def test_someone_elses_or_an_unknown_assignment(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=1)
    ann = workforce.next_task(store, "ann", T0)
    assert ann is not None
    with pytest.raises(AnswerError) as other:
        workforce.submit_answer(store, aws["s3"], aws["sfn"], "bob", ann["assignment_id"], {"boxes": []}, T0)
    assert other.value.status == 403
    for unknown in ("0" * 32, "../ASSIGN", ""):
        with pytest.raises(AnswerError) as missing:
            workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", unknown, {"boxes": []}, T0)
        assert missing.value.status == 404


def test_nothing_is_handed_out_after_the_job_expired(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=1)
    ann = workforce.next_task(store, "ann", T0)
    assert ann is not None
    assert workforce.next_task(store, "bob", T0 + 3600) is None
    with pytest.raises(AnswerError) as expired:
        workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", ann["assignment_id"], {"boxes": []}, T0 + 3600)
    assert expired.value.status == 410 and "expired" in expired.value.message


def test_a_job_refuses_images_outside_the_raw_bucket_and_bad_parameters(aws: dict[str, Any]) -> None:
    store = aws["store"]
    outside = [JobImage("s3://artifacts/models/secret.jpg", "a" * 64, 10, 10)]
    with pytest.raises(ValueError, match="not in the raw bucket"):
        create_job(store, "loupe-x", "t", outside, CLASSES, "s3://artifacts/labeling/x/", BUCKET, T0)
    good = [JobImage(f"s3://{BUCKET}/raw/a.jpg", "a" * 64, 10, 10)]
    with pytest.raises(ValueError, match="LabelersPerImage must be 1 to 5"):
        create_job(store, "loupe-x", "t", good, CLASSES, "s3://artifacts/l/", BUCKET, T0, labelers_per_image=6)
    assert store.job("loupe-x") is None and store.items("loupe-x") == []


def test_a_review_lease_expires_and_the_first_reviewer_loses_it(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=2)
    for user, boxes in (("ann", [box(10, 10, 40, 20)]), ("bob", [])):
        task = workforce.next_task(store, user, T0)
        assert task is not None
        workforce.submit_answer(store, aws["s3"], aws["sfn"], user, task["assignment_id"], {"boxes": boxes}, T0)
    first = workforce.next_review(store, "rev1", T0 + 1)
    assert first is not None
    assert workforce.next_review(store, "rev2", T0 + 2) is None  # held by rev1
    second = workforce.next_review(store, "rev2", T0 + 1 + workforce.REVIEW_LEASE_SECONDS + 1)
    assert second is not None and second["item_id"] == first["item_id"]
    with pytest.raises(AnswerError) as lost:
        workforce.submit_review(store, aws["s3"], aws["sfn"], "rev1", first["item_id"], {"boxes": []}, T0 + 1000)
    assert lost.value.status == 409 and "another reviewer holds it" in lost.value.message
    done = workforce.submit_review(store, aws["s3"], aws["sfn"], "rev2", second["item_id"], {"boxes": []}, T0 + 1001)
    assert done["status"] == "final"


def test_an_interrupted_finish_is_completed_by_expiry(aws: dict[str, Any]) -> None:
    """The Lambda that settled the last image failed while writing the output: the job stays 'finishing' with every
    image settled, and expire_job finishes it."""
    store = aws["store"]
    _job(store, labelers=1)
    task = workforce.next_task(store, "ann", T0)
    assert task is not None

    class FailingS3:
        def put_object(self, **kwargs: Any) -> Any:
            raise ConnectionError("S3 unreachable")

    with pytest.raises(ConnectionError):
        workforce.submit_answer(store, FailingS3(), aws["sfn"], "ann", task["assignment_id"], {"boxes": []}, T0)  # type: ignore[arg-type]
    assert store.job("loupe-c1-aaaa")["status"] == "finishing" and aws["sfn"].calls == []
    from loupe.labeling.workforce_jobs import expire_job

    expire_job(store, aws["s3"], aws["sfn"], "loupe-c1-aaaa", T0 + 3600)
    assert [kind for kind, _ in aws["sfn"].calls] == ["success"]
    assert store.job("loupe-c1-aaaa")["status"] == "completed"


def test_a_caller_without_a_username_gets_no_work(aws: dict[str, Any]) -> None:
    store = aws["store"]
    _job(store, labelers=1)
    for call in (
        lambda: workforce.next_task(store, "", T0),
        lambda: workforce.next_review(store, "", T0),
        lambda: workforce.submit_answer(store, aws["s3"], aws["sfn"], "", "ab12", {"boxes": []}, T0),
        lambda: workforce.submit_review(store, aws["s3"], aws["sfn"], "", "loupe-c1-aaaa.0", {"boxes": []}, T0),
    ):
        with pytest.raises(AnswerError) as refused:
            call()
        assert refused.value.status == 403
    item = store.item("loupe-c1-aaaa", 0)
    assert item is not None and item["slots"] == {}


def test_a_declined_image_goes_to_another_labeler_and_not_back(aws: dict[str, Any]) -> None:
    """Before decline, a labeler who could not answer the oldest image got it back on every request (their own
    lease) until it expired, and saw nothing else."""
    store = aws["store"]
    _job(store, labelers=1, images=2)
    first = workforce.next_task(store, "ann", T0)
    assert first is not None and first["source_ref"].endswith("/0.jpg")
    out = workforce.decline_task(store, aws["s3"], aws["sfn"], "ann", first["assignment_id"], T0 + 1)
    assert out == {"assignment_id": first["assignment_id"], "status": "declined", "declined": 1}
    second = workforce.next_task(store, "ann", T0 + 2)
    assert second is not None and second["source_ref"].endswith("/1.jpg")
    bob = workforce.next_task(store, "bob", T0 + 3)
    assert bob is not None and bob["source_ref"].endswith("/0.jpg")  # the slot ann gave up is free at once
    with pytest.raises(AnswerError) as gone:  # the declined lease takes no answer and no second decline
        workforce.submit_answer(store, aws["s3"], aws["sfn"], "ann", first["assignment_id"], {"boxes": []}, T0 + 4)
    assert gone.value.status == 410
    with pytest.raises(AnswerError) as twice:
        workforce.decline_task(store, aws["s3"], aws["sfn"], "ann", first["assignment_id"], T0 + 5)
    assert twice.value.status == 409
    with pytest.raises(AnswerError) as other:
        workforce.decline_task(store, aws["s3"], aws["sfn"], "bob", second["assignment_id"], T0 + 6)
    assert other.value.status == 403
