"""Verification in the labeling app (LabelingService=Loupe, EnableVerification=true) end to end on the local AWS: the
deployed labeling state machine's ASL with those options runs in moto's engine with the real handlers. A labeler
boxes two uploads through the console API; the run holds the labels and creates the app's verify job; a second
person, handed verify tasks by the same ``GET /labeling/tasks/next``, accepts one image and rejects the other with
a reason; the app writes Ground Truth's verification manifest and answers the token; ApplyVerification puts the
accepted image in the new dataset version and the rejected one back to unlabeled, as with a Ground Truth
verification job. No CreateLabelingJob is made."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from support import image_samples as samples
from support.console_users import api, signed_in
from support.labeling_app import app_labeling_machine
from support.waiting import wait_for

from loupe.labeling.config import REJECT_REASONS
from loupe.labeling.trigger import new_claim_id
from loupe_local.standins.httpapi.service import HttpApis

pytestmark = pytest.mark.integration

W, H = 128, 96


def api_url(env: Any) -> str:
    return next(s for s in env.rt.standins if isinstance(s, HttpApis)).urls["ConsoleApi"]


def entered(env: Any, arn: str) -> list[str]:
    history = env.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def serve(
    base: str,
    token: str,
    mine: dict[str, str],
    answer: Callable[[str, dict[str, Any]], None],
    enough: Callable[[], bool],
) -> bool:
    """Take tasks until ``enough()`` or none is left: ``answer(sha, task)`` the ones of ``mine`` (source_ref ->
    sha); decline any other (an image of another test's job, still open in the session's table)."""
    while not enough():
        status, _, body = api(f"{base}/labeling/tasks/next", token=token)
        assert status == 200, body
        task = body["task"]
        if task is None:
            return False
        sha = mine.get(task["source_ref"])
        if sha is None:
            status, _, out = api(f"{base}/labeling/tasks/{task['assignment_id']}/decline", "POST", token, {})
            assert status == 200, out
            continue
        answer(sha, task)
    return True


def test_a_labeling_run_with_verification_accepts_one_image_and_rejects_the_other(env) -> None:
    drawn = {"label": "scratch", "left": 30, "top": 20, "width": 40, "height": 24}
    keys = [f"raw/app-verify/tag-{s}.jpg" for s in (6810, 6811)]
    hashes = [env.put_raw(key, samples.jpeg(W, H, seed=6810 + i)) for i, key in enumerate(keys)]
    for sha in hashes:
        env.wait_status(sha, "unlabeled")
    mine = {f"s3://{env.raw}/{key}": sha for key, sha in zip(keys, hashes, strict=True)}
    accepted, rejected = hashes
    parent = env.ledger.latest_version()
    groundtruth = next(s for s in env.rt.standins if s.name == "groundtruth")
    jobs_before = set(groundtruth.jobs)
    machine = app_labeling_machine(env.sfn, env.rt, labelers=1, verify=True)
    claim_id = new_claim_id(hashes) + "v"
    assert env.ledger.claim(hashes, claim_id) == hashes
    arn = env.sfn.start_execution(
        stateMachineArn=machine, name=f"app-{claim_id}", input=json.dumps({"claim_id": claim_id, "images": hashes})
    )["executionArn"]
    base = api_url(env)
    labeler, verifier = signed_in(env.rt, "labelers"), signed_in(env.rt, "labelers")

    labeled: set[str] = set()

    def label(sha: str, task: dict[str, Any]) -> None:
        assert task["kind"] == "label", task
        path = f"{base}/labeling/tasks/{task['assignment_id']}"
        status, _, body = api(path, "POST", labeler["id"], {"verdict": "accept"})
        assert status == 400 and "this is a labeling task" in body["message"], body  # a verdict on a label task
        status, _, body = api(path, "POST", labeler["id"], {"boxes": [drawn]})
        assert status == 200 and body["boxes"] == 1, body
        labeled.add(sha)

    # the labeler stops once both are labeled: the verify tasks that follow are for another person
    wait_for(lambda: serve(base, labeler["id"], mine, label, lambda: labeled == set(hashes)), 60, "both labeled")

    verdicts: dict[str, str] = {}

    def verify(sha: str, task: dict[str, Any]) -> None:
        assert task["kind"] == "verify" and task["boxes"] == [drawn], task
        assert task["reasons"] == list(REJECT_REASONS) and (task["width"], task["height"]) == (W, H)
        path = f"{base}/labeling/tasks/{task['assignment_id']}"
        status, _, body = api(path, "POST", verifier["id"], {"boxes": [drawn]})
        assert status == 400 and "this is a verify task" in body["message"], body  # boxes on a verify task
        status, _, body = api(path, "POST", verifier["id"], {"verdict": "reject"})
        assert status == 400 and "a reject needs a reason" in body["message"], body
        verdict = {"verdict": "accept"} if sha == accepted else {"verdict": "reject", "reason": REJECT_REASONS[1]}
        status, _, body = api(path, "POST", verifier["id"], verdict)
        assert status == 200 and body["verdict"] == verdict["verdict"], body
        status, _, body = api(path, "POST", verifier["id"], verdict)
        assert status == 409, body  # a verdict is not given twice
        verdicts[sha] = verdict["verdict"]

    wait_for(lambda: serve(base, verifier["id"], mine, verify, lambda: len(verdicts) == 2), 60, "both verified")
    done = env.wait_execution(arn, timeout=120)
    assert done["status"] == "SUCCEEDED", done
    states = entered(env, arn)
    assert "AppVerificationJob" in states and "VerificationJob" not in states and "LabelingJob" not in states
    assert set(groundtruth.jobs) == jobs_before  # Ground Truth was never asked
    out = json.loads(done["output"])
    assert out["collected"]["labeled"] == [accepted] and out["collected"]["rejected"] == 1
    assert "-v-" in out["verification"]["job_name"]
    entry = env.ledger.get(accepted)
    assert entry["status"] == "labeled" and entry["verification"] == "Label correct"
    assert json.loads(entry["annotations"]) == [{"class_id": 0, "left": 30, "top": 20, "width": 40, "height": 24}]
    back = env.ledger.get(rejected)
    assert back["status"] == "unlabeled" and "claim_id" not in back
    assert f"verification job {out['verification']['job_name']}: {REJECT_REASONS[1]}" in back["last_failure"]
    dataset = out["dataset"]
    assert dataset["parent"] == parent and dataset["version"] > (parent or 0)
    version = json.loads(
        env.s3.get_object(Bucket=env.artifacts, Key=f"datasets/v{dataset['version']}/dataset.json")["Body"].read()
    )
    in_version = {image["sha256"] for image in version["images"]}
    assert accepted in in_version and rejected not in in_version
