"""The verification step in the labeling app (loupe.labeling.app_verification), on moto with the template's tables:
a labeling run's labeled images, held for verification, become verify tasks showing the boxes that will be
recorded; verifiers accept or reject them with a reason through the same lease/answer/decline/expiry as labeling
tasks; the app's output is Ground Truth's verification manifest, which apply_verification reads unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support.labeling_app import RecordingSfn, box, make_store
from support.stack_tables import template_table_properties

from loupe.labeling import app_job, app_verification, collection, verification, workforce, workforce_jobs
from loupe.labeling.answers import AnswerError
from loupe.labeling.config import REJECT_REASONS, VERIFY_ATTRIBUTE, LabelingConfig
from loupe.ledger import Ledger

T0 = 1_800_000_000.0
CLAIM = "20260101t000000-0e0f0a0b"
W, H = 64, 48


class Info:
    def __init__(self, sha: str) -> None:
        self.sha256, self.format, self.size, self.width, self.height = sha, "jpg", 10, W, H
        self.mode, self.orientation, self.normalized, self.notes = "RGB", 1, None, []


class NoGroundTruth:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"sagemaker.{name} called for a labeling-app run")


def cfg() -> LabelingConfig:
    return LabelingConfig("us-east-1", "raw", "art", "", {"0": "scratch"})


def base_run(hashes: list[str], lifetime: str = "3600") -> dict[str, Any]:
    return {
        "claim_id": CLAIM,
        "images": hashes,
        "config": {"verify": "true", "service": "Loupe", "labelers_per_image": "1", "task_lifetime_seconds": lifetime},
        "manifest": {"images": hashes, "output_uri": f"s3://art/labeling/{CLAIM}/output/"},
    }


@pytest.fixture
def labeled() -> Iterator[dict[str, Any]]:
    """Three claimed images labeled through the app by one labeler each (image i gets a box at left 4+i) and
    collected for verification: the run as ApplyVerification's predecessors leave it."""
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName="ledger", **template_table_properties("LedgerTable"))
        ledger = Ledger(dynamodb.Table("ledger"))
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="art")
        store, sfn = make_store(dynamodb), RecordingSfn()
        hashes = [f"{i + 1:064x}" for i in range(3)]
        for sha in hashes:
            ledger.record_image(Info(sha), f"s3://raw/raw/{sha}.jpg", f"s3://raw/raw/{sha}.jpg", {"kind": "upload"})
        assert ledger.claim(hashes, CLAIM) == hashes
        run = base_run(hashes)
        name = app_job.create_app_job(store, ledger, cfg(), run, "token-label", T0)["job_name"]
        for user in ("ann", "bob", "cyd"):
            task = workforce.next_task(store, user, T0 + 1)
            assert task is not None and task["kind"] == "label"
            i = hashes.index(task["source_ref"].rsplit("/", 1)[-1].removesuffix(".jpg"))
            body = {"boxes": [box(4 + i, 5, 20, 10)]}
            workforce.submit_answer(store, s3, sfn, user, task["assignment_id"], body, T0 + 2)
        output = json.loads(sfn.calls[-1][1]["output"])
        run["labeling"] = {"job_name": name, "output_uri": output["output_uri"]}
        run["collected"] = collection.collect_labels(s3, NoGroundTruth(), ledger, run, verification=True)  # type: ignore[arg-type]
        assert sorted(run["collected"]["labeled"]) == sorted(hashes)
        yield {"ledger": ledger, "store": store, "s3": s3, "sfn": RecordingSfn(), "hashes": hashes, "run": run}


def _take(env: dict[str, Any], user: str, now: float = T0 + 10) -> dict[str, Any]:
    task = workforce.next_task(env["store"], user, now)
    assert task is not None, f"{user} got no task"
    return task


def _answer(env: dict[str, Any], user: str, task: dict[str, Any], body: Any, now: float = T0 + 11) -> dict[str, Any]:
    return workforce.submit_answer(env["store"], env["s3"], env["sfn"], user, task["assignment_id"], body, now)


def _sha(task: dict[str, Any]) -> str:
    return task["source_ref"].rsplit("/", 1)[-1].removesuffix(".jpg")


def test_verify_tasks_show_the_pending_boxes_and_take_only_a_verdict(labeled: dict[str, Any]) -> None:
    env, hashes = labeled, labeled["hashes"]
    created = app_verification.create_app_verification_job(
        env["store"], env["s3"], env["ledger"], cfg(), env["run"], "token-verify", T0 + 5
    )
    assert created["created"] is True and created["images"] == 3 and "-v-" in created["job_name"]
    again = app_verification.create_app_verification_job(
        env["store"], env["s3"], env["ledger"], cfg(), env["run"], "token-verify", T0 + 6
    )
    assert again["job_name"] == created["job_name"] and again["created"] is False  # a Lambda retry
    task = _take(env, "vic")
    assert task["kind"] == "verify" and task["reasons"] == list(REJECT_REASONS) and task["prefill"] == []
    i = hashes.index(_sha(task))
    assert task["boxes"] == [box(4 + i, 5, 20, 10)]  # what ApplyVerification records if accepted
    with pytest.raises(AnswerError, match="this is a verify task") as refused:
        _answer(env, "vic", task, {"boxes": [box(1, 1, 5, 5)]})
    assert refused.value.status == 400
    with pytest.raises(AnswerError, match="a reject needs a reason"):
        _answer(env, "vic", task, {"verdict": "reject"})
    out = _answer(env, "vic", task, {"verdict": "accept"})  # the refused answers changed nothing
    assert out == {
        "assignment_id": task["assignment_id"],
        "status": "answered",
        "image": "final",
        "verdict": "accept",
        "category": "Label correct",
    }
    with pytest.raises(AnswerError) as twice:
        _answer(env, "vic", task, {"verdict": "reject", "reason": REJECT_REASONS[0]})
    assert twice.value.status == 409  # an answer is not changed


def test_accepted_rejected_and_unverified_images_reach_apply_verification(labeled: dict[str, Any]) -> None:
    """One accepted, one rejected in the verifier's words, one declined by two verifiers (LabelingDeclineLimit 2):
    the token succeeds with Ground Truth's verification manifest; the accepted image is labeled with its boxes, the
    other two go back to unlabeled with the reason."""
    env, hashes, ledger = labeled, labeled["hashes"], labeled["ledger"]
    created = app_verification.create_app_verification_job(
        env["store"], env["s3"], ledger, cfg(), env["run"], "token-verify", T0 + 5
    )
    verdicts: dict[str, Any] = {}
    for user, body in (("vic", {"verdict": "accept"}), ("wes", {"verdict": "reject", "reason": "glare, no scratch"})):
        task = _take(env, user)
        verdicts[_sha(task)] = body
        _answer(env, user, task, body)
    for user in ("xia", "yul"):
        task = _take(env, user)
        assert _sha(task) not in verdicts
        workforce.decline_task(env["store"], env["s3"], env["sfn"], user, task["assignment_id"], T0 + 12, "cannot tell")
    kind, call = env["sfn"].calls[-1]
    assert kind == "success"
    output = json.loads(call["output"])
    assert output["job_name"] == created["job_name"] and output["labeled"] == 2 and output["released"] == 1
    assert output["output_uri"] == app_job.app_output_uri(env["run"], created["job_name"])
    run = {**env["run"], "verification": output}
    applied = verification.apply_verification(env["s3"], NoGroundTruth(), ledger, run)  # type: ignore[arg-type]
    accepted = next(sha for sha, body in verdicts.items() if body["verdict"] == "accept")
    rejected = next(sha for sha, body in verdicts.items() if body["verdict"] == "reject")
    declined = next(sha for sha in hashes if sha not in verdicts)
    assert applied["labeled"] == [accepted] and applied["rejected"] == 2
    entry = ledger.get(accepted)
    i = hashes.index(accepted)
    assert entry["status"] == "labeled" and entry["verification"] == "Label correct"
    assert json.loads(entry["annotations"]) == [{"class_id": 0, "left": 4 + i, "top": 5, "width": 20, "height": 10}]
    back = ledger.get(rejected)
    assert back["status"] == "unlabeled" and "Incorrect label - other: glare, no scratch" in back["last_failure"]
    assert "declined by 2 labelers" in ledger.get(declined)["last_failure"]
    text = env["s3"].get_object(Bucket="art", Key=output["output_uri"].removeprefix("s3://art/"))["Body"].read()
    lines = {json.loads(x)["loupe-sha256"]: json.loads(x) for x in text.decode().splitlines()}
    assert lines[accepted][f"{VERIFY_ATTRIBUTE}-metadata"]["type"] == "groundtruth/label-verification"
    assert "loupe-boxes" in lines[accepted]  # the labeling line passes through, as Ground Truth's does
    assert "failure-reason" in lines[declined][f"{VERIFY_ATTRIBUTE}-metadata"]


def test_a_wait_that_ends_first_expires_the_verify_job_not_the_labeling_job(labeled: dict[str, Any]) -> None:
    """ExpireAppVerificationJob ends the claim's verify job (the claim has two app jobs now); the verdict given is
    kept, the image nobody verified is a failed line."""
    env, ledger = labeled, labeled["ledger"]
    created = app_verification.create_app_verification_job(
        env["store"], env["s3"], ledger, cfg(), env["run"], "token-verify", T0 + 5
    )
    task = _take(env, "vic")
    _answer(env, "vic", task, {"verdict": "accept"})
    expired = app_job.expire_app_job(
        env["store"], env["s3"], env["sfn"], ledger, env["run"], T0 + 7200, purpose="verification"
    )
    assert expired["job_name"] == created["job_name"] and expired["status"] == "completed"
    assert env["store"].job(env["run"]["labeling"]["job_name"])["status"] == "completed"  # untouched
    applied = verification.apply_verification(
        env["s3"],
        NoGroundTruth(),
        ledger,
        {**env["run"], "verification": expired},  # type: ignore[arg-type]
    )
    assert applied["labeled"] == [_sha(task)] and applied["rejected"] == 2
    others = [sha for sha in env["hashes"] if sha != _sha(task)]
    assert all("no labeler answered" in ledger.get(sha)["last_failure"] for sha in others)


def test_nobody_is_handed_the_boxes_they_drew_to_verify(labeled: dict[str, Any]) -> None:
    """ann, bob and cyd each labeled one image: each is handed the other two to verify, never their own."""
    env = labeled
    name = env["run"]["labeling"]["job_name"]
    drew = {}
    for item in env["store"].items(name):
        (row,) = env["store"].answers(name, int(item["index"]))
        drew[row["user"]] = item["sha256"]
    app_verification.create_app_verification_job(
        env["store"], env["s3"], env["ledger"], cfg(), env["run"], "token-verify", T0 + 5
    )
    for user in ("ann", "bob", "cyd"):
        handed = set()
        while (task := workforce.next_task(env["store"], user, T0 + 10)) is not None:
            handed.add(_sha(task))
            workforce.decline_task(env["store"], env["s3"], env["sfn"], user, task["assignment_id"], T0 + 10)
        assert handed == set(env["hashes"]) - {drew[user]}, user


def test_a_verify_job_nobody_answered_fails_the_token_and_the_release_gives_the_images_back(
    labeled: dict[str, Any],
) -> None:
    """No verdict before the tasks expired: the token fails (the run's VerificationJobFailed -> ReleaseClaims), and
    the release puts every image held for verification back to unlabeled; nothing is handed out any more."""
    from loupe.labeling import release

    env, ledger = labeled, labeled["ledger"]
    name = app_verification.create_app_verification_job(
        env["store"], env["s3"], ledger, cfg(), env["run"], "token-verify", T0 + 5
    )["job_name"]
    workforce_jobs.expire_job(env["store"], env["s3"], env["sfn"], name, T0 + 7200)
    kind, call = env["sfn"].calls[-1]
    assert kind == "failure" and call["taskToken"] == "token-verify" and call["error"] == "LabelingJobFailed"
    assert call["cause"].startswith(f"verification job {name} has a verdict on none of its 3 images")
    failed = {**env["run"], "failed_state": "VerificationJob", "error": {"Error": "LabelingJobFailed", "Cause": "x"}}
    out = release.release_run(ledger, failed, NoGroundTruth(), env["store"])  # type: ignore[arg-type]
    assert out["released"] == 3
    assert all(ledger.get(sha)["status"] == "unlabeled" for sha in env["hashes"])
    assert workforce.next_task(env["store"], "vic", T0 + 7201) is None
