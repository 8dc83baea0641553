"""LabelingService=Loupe end to end on the local AWS: the deployed labeling state machine's ASL, its Configure state
set as the default parameters set it (LabelingService=Loupe; LabelersPerImage 1, or 2), runs in moto's engine with
the real handlers. The run creates the labeling app's job with its task token and waits; bot labelers (Cognito users
of the stack's pool, loupe_local.console.workforce) take the images through the console API and answer from the
workforce's answer source; the app writes Ground Truth's output manifest and answers the token; the run builds the
next dataset version with the same code as a Ground Truth run. No CreateLabelingJob is made.

(The session's stack is deployed with LabelingService=GroundTruth, for the Ground Truth path's tests; these runs use
a copy of its state machine with the labeling app's options, as test_labeling_wait_flow.py copies it with a short
wait.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import image_samples as samples
from support.console_users import api, signed_in
from support.labeling_app import app_labeling_machine
from support.waiting import wait_for

from loupe import manifests
from loupe.labeling.trigger import new_claim_id
from loupe_local.console.workforce import AppUser, BotLabeler, workforce_answerer
from loupe_local.standins.httpapi.service import HttpApis

pytestmark = pytest.mark.integration

W, H = 128, 96


def app_machine(env: Any, labelers: int, wait_seconds: int | None = None) -> str:
    return app_labeling_machine(env.sfn, env.rt, labelers, wait_seconds)


def api_url(env: Any) -> str:
    return next(s for s in env.rt.standins if isinstance(s, HttpApis)).urls["ConsoleApi"]


def bot(env: Any, answer: Any = None, seed: int = 0) -> BotLabeler:
    idp = env.rt.client("cognito-idp")
    user = AppUser(idp, env.rt.physical("ConsoleUserPool"), env.rt.physical("ConsoleUserPoolClient"), "labelers")
    directory = Path(env.rt.state_dir) / "workforce"
    return BotLabeler(user, api_url(env), answer or workforce_answerer(directory), seed)


def upload(env: Any, name: str, seeds: list[int]) -> list[str]:
    hashes = [env.put_raw(f"raw/app-run/{name}-{s}.jpg", samples.jpeg(W, H, seed=s)) for s in seeds]
    for sha in hashes:
        env.wait_status(sha, "unlabeled")
    return hashes


def start(env: Any, machine: str, hashes: list[str], suffix: str) -> tuple[str, str]:
    claim_id = new_claim_id(hashes) + suffix
    assert env.ledger.claim(hashes, claim_id) == hashes
    arn = env.sfn.start_execution(
        stateMachineArn=machine, name=f"app-{claim_id}", input=json.dumps({"claim_id": claim_id, "images": hashes})
    )["executionArn"]
    return claim_id, arn


def work_until_done(env: Any, arn: str, *bots: BotLabeler, timeout: float = 120.0) -> dict[str, Any]:
    """Let the bots take and answer what they can until the execution has ended."""

    def finished() -> dict[str, Any] | None:
        for b in bots:
            while b.step() is not None:
                pass
        out = env.sfn.describe_execution(executionArn=arn)
        return out if out["status"] != "RUNNING" else None

    return wait_for(finished, timeout, "the labeling run to end")


def entered(env: Any, arn: str) -> list[str]:
    history = env.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def created_labeling_jobs(env: Any) -> set[str]:
    groundtruth = next(s for s in env.rt.standins if s.name == "groundtruth")
    return set(groundtruth.jobs)


def test_a_default_run_goes_through_the_labeling_app_to_a_new_dataset_version(env) -> None:
    box = {"class_id": 0, "left": 12, "top": 10, "width": 40, "height": 22}
    hashes = upload(env, "one", [6100, 6101])
    env.answers("app-run-one", {hashes[0]: [box], hashes[1]: []})
    jobs_before = created_labeling_jobs(env)
    parent = env.ledger.latest_version()
    _, arn = start(env, app_machine(env, labelers=1), hashes, "a")
    done = work_until_done(env, arn, bot(env))
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    assert "AppLabelingJob" in entered(env, arn) and "LabelingJob" not in entered(env, arn)
    assert created_labeling_jobs(env) == jobs_before  # Ground Truth was never asked
    assert sorted(out["collected"]["labeled"]) == sorted(hashes)
    assert json.loads(env.ledger.get(hashes[0])["annotations"]) == [box]
    assert json.loads(env.ledger.get(hashes[1])["annotations"]) == []  # labeled "no defect"
    # the output manifest is Ground Truth's, under the run's prefix, with the app's agreement per image
    bucket, key = manifests.split_s3_uri(out["collected"]["output_uri"])
    assert key.endswith(f"/{out['labeling']['job_name']}/manifests/output/output.manifest")
    lines = [json.loads(x) for x in env.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()]
    assert [line["loupe-boxes-metadata"]["loupe-labelers"] for line in lines] == [1, 1]
    dataset = out["dataset"]
    assert dataset["parent"] == parent and dataset["version"] > (parent or 0)
    version = json.loads(
        env.s3.get_object(Bucket=env.artifacts, Key=f"datasets/v{dataset['version']}/dataset.json")["Body"].read()
    )
    assert set(hashes) <= {image["sha256"] for image in version["images"]}


def test_two_labelers_disagree_a_reviewer_resolves_and_the_run_goes_on(env) -> None:
    truth = {"class_id": 0, "left": 20, "top": 20, "width": 30, "height": 20}
    elsewhere = {"class_id": 0, "left": 80, "top": 60, "width": 30, "height": 20}
    hashes = upload(env, "two", [6200])
    env.answers("app-run-two", {hashes[0]: [truth]})
    from loupe.datasets import Box

    def misplaced(sha: str, width: int, height: int, rng: Any) -> list[Box] | None:
        return [Box.from_dict(elsewhere)] if sha in hashes else None

    _, arn = start(env, app_machine(env, labelers=2), hashes, "b")
    ann, bob = bot(env, seed=1), bot(env, answer=misplaced, seed=2)
    reviewer = signed_in(env.rt, "reviewers")
    base = api_url(env)

    def review_waiting() -> dict[str, Any] | None:
        for b in (ann, bob):
            while b.step() is not None:
                pass
        status, _, body = api(f"{base}/review/next", token=reviewer["id"])
        assert status == 200, body
        item = body.get("item")
        return item if item and item["source_ref"].endswith("/two-6200.jpg") else None

    item = wait_for(review_waiting, 60, "the disagreement to reach the reviewer")
    resolved = {"label": "scratch", "left": 21, "top": 20, "width": 29, "height": 20}
    status, _, body = api(f"{base}/review/{item['item_id']}", "POST", reviewer["id"], {"boxes": [resolved]})
    assert status == 200, body
    done = env.wait_execution(arn, timeout=120)
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    assert out["collected"]["labeled"] == hashes
    assert json.loads(env.ledger.get(hashes[0])["annotations"]) == [
        {"class_id": 0, "left": 21, "top": 20, "width": 29, "height": 20}
    ]
    bucket, key = manifests.split_s3_uri(out["collected"]["output_uri"])
    line = json.loads(env.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()[0])
    meta = line["loupe-boxes-metadata"]
    assert meta["loupe-final-by"] == "reviewer" and meta["loupe-labelers"] == 2 and meta["loupe-agreement"] < 1


def test_a_wait_that_ends_first_keeps_the_answered_images_and_releases_the_rest(env) -> None:
    """The run's wait (here shortened) outlasts the tasks' lifetime in the template; when it ends the app's job is
    expired: the answered image is labeled, the one nobody could answer (declined by the bot) is unlabeled again."""
    box = {"class_id": 0, "left": 30, "top": 12, "width": 25, "height": 25}
    hashes = upload(env, "expire", [6300, 6301])
    env.answers("app-run-expire", {hashes[0]: [box]})
    _, arn = start(env, app_machine(env, labelers=1, wait_seconds=8), hashes, "c")
    done = work_until_done(env, arn, bot(env))
    assert "ExpireAppJob" in entered(env, arn) and "LabelingJobFailed" not in entered(env, arn)
    assert done["status"] == "SUCCEEDED", done
    labeled = env.ledger.get(hashes[0])
    assert labeled["status"] == "labeled" and json.loads(labeled["annotations"]) == [box]
    released = env.ledger.get(hashes[1])
    assert released["status"] == "unlabeled" and "no labeler answered" in released["last_failure"]
    assert "claim_id" not in released


def test_an_image_no_labeler_can_answer_is_released_once_declined_and_the_run_goes_on(env) -> None:
    """LabelingDeclineLimit (the template's default, 2): two bot labelers without an answer for an image decline
    it, and it is released as unlabeled with their reason at once; the run builds its dataset from the answered
    image without waiting for the tasks' lifetime (ten days by default: before, the run waited for all of it)."""
    from loupe_local.console.workforce import NO_ANSWER

    assert str(env.rt.parameter_values["LabelingDeclineLimit"]) == "2"
    box = {"class_id": 0, "left": 20, "top": 14, "width": 30, "height": 20}
    hashes = upload(env, "declined", [6710, 6711])
    env.answers("app-run-declined", {hashes[0]: [box]})
    _, arn = start(env, app_machine(env, labelers=1), hashes, "e")
    done = work_until_done(env, arn, bot(env, seed=1), bot(env, seed=2))
    assert done["status"] == "SUCCEEDED", done
    assert "ExpireAppJob" not in entered(env, arn)
    assert env.ledger.get(hashes[0])["status"] == "labeled"
    released = env.ledger.get(hashes[1])
    assert released["status"] == "unlabeled" and "claim_id" not in released
    assert f"declined by 2 labelers (LabelingDeclineLimit 2): {NO_ANSWER}" in released["last_failure"]


def test_the_local_automatic_workforce_labels_a_run_by_itself(env) -> None:
    """What `loupe local up` starts with LabelingService=Loupe: bot labelers in a thread
    (loupe_local.console.workforce), idle while the workforce is in manual mode, answering as soon as it is auto
    again."""
    from loupe_local.console.workforce import AppWorkforce
    from loupe_local.standins.groundtruth.workforce import Workforce, set_workforce_mode

    box = {"class_id": 0, "left": 8, "top": 8, "width": 30, "height": 30}
    hashes = upload(env, "auto", [6500])
    env.answers("app-run-auto", {hashes[0]: [box]})
    before = Workforce(Path(env.rt.state_dir) / "workforce").mode
    set_workforce_mode(env.rt.state_dir, "manual")
    workforce = AppWorkforce.for_runtime(env.rt, api_url(env)).start()
    try:
        _, arn = start(env, app_machine(env, labelers=1), hashes, "d")
        job = wait_for(lambda: env.ledger.claim_jobs(env.ledger.get(hashes[0])["claim_id"]), what="the app's job")
        # a labeler of the test's own, declining what it is handed: it is handed the run's image, so the bots have
        # not taken it while the workforce is manual
        sentinel = bot(env, answer=lambda *_: None)
        handed = []
        while (got := sentinel.step()) is not None:
            handed.append(got["task"]["source_ref"])
        assert any(ref.endswith("/auto-6500.jpg") for ref in handed), handed
        assert env.ledger.get(hashes[0])["status"] == "claimed" and job
        set_workforce_mode(env.rt.state_dir, "auto")
        done = env.wait_execution(arn, timeout=120)
    finally:
        workforce.stop()
        set_workforce_mode(env.rt.state_dir, before)
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(env.ledger.get(hashes[0])["annotations"]) == [box]


def test_bots_label_where_the_pool_requires_mfa(env) -> None:
    """UserPoolMfa=ON (the pool's MfaConfiguration as a stack deployed with it has it): each bot sets up its
    authenticator at its first sign-in (MFA_SETUP), answers a one-time code when it signs in again, and labels."""
    idp, pool = env.rt.client("cognito-idp"), env.rt.physical("ConsoleUserPool")
    before = idp.get_user_pool_mfa_config(UserPoolId=pool)
    idp.set_user_pool_mfa_config(
        UserPoolId=pool, SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration="ON"
    )
    try:
        labeler = bot(env)
        assert labeler.user.authenticator.secret, "the bot signed in without setting up MFA"
        labeler.user.token = "not-a-token"  # as an expired one: the API's 401 makes the bot sign in again, with a code
        box = {"class_id": 0, "left": 8, "top": 8, "width": 30, "height": 20}
        hashes = upload(env, "mfa", [7931])
        env.answers("app-run-mfa", {hashes[0]: [box]})
        _, arn = start(env, app_machine(env, labelers=1), hashes, "m")
        done = work_until_done(env, arn, labeler)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(env.ledger.get(hashes[0])["annotations"]) == [box]
        assert labeler.user.token != "not-a-token"
    finally:
        idp.set_user_pool_mfa_config(
            UserPoolId=pool,
            SoftwareTokenMfaConfiguration=before.get("SoftwareTokenMfaConfiguration") or {"Enabled": False},
            MfaConfiguration=before["MfaConfiguration"],
        )


def test_bot_labelers_verify_each_others_boxes_when_verification_is_on(env) -> None:
    """EnableVerification=true with the app: the bots label, then each verifies the other's boxes against its own
    answer source (the app never hands anyone their own boxes to verify): one image accepted, one rejected."""
    from loupe.datasets import Box

    truth = {"class_id": 0, "left": 20, "top": 20, "width": 40, "height": 30}
    elsewhere = {"class_id": 0, "left": 70, "top": 50, "width": 40, "height": 30}
    hashes = upload(env, "verify-bots", [6760, 6761])
    env.answers("app-run-verify-bots", {sha: [truth] for sha in hashes})

    def doubts_the_second(sha: str, width: int, height: int, rng: Any) -> list[Box] | None:
        if sha not in hashes:
            return None
        return [Box.from_dict(truth if sha == hashes[0] else elsewhere)]

    machine = app_labeling_machine(env.sfn, env.rt, labelers=1, verify=True)
    _, arn = start(env, machine, hashes, "vb")
    done = work_until_done(env, arn, bot(env, seed=1), bot(env, answer=doubts_the_second, seed=2))
    assert done["status"] == "SUCCEEDED", done
    assert "AppVerificationJob" in entered(env, arn)
    out = json.loads(done["output"])
    assert out["collected"]["labeled"] == [hashes[0]] and out["collected"]["rejected"] == 1
    assert env.ledger.get(hashes[0])["verification"] == "Label correct"
    back = env.ledger.get(hashes[1])
    assert back["status"] == "unlabeled" and "bounding box not accurate enough" in back["last_failure"]
