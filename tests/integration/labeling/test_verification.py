"""The optional verification job, through a copy of the deployed labeling state machine with verification on
(the session's stack has EnableVerification=false): accepted labels become labeled, rejected ones go back to
unlabeled. Same ASL, handlers, stand-ins; only the substituted flag differs."""

from __future__ import annotations

import json

import pytest
from support import image_samples as samples

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def verifying_machine(env):
    deployed = env.sfn.describe_state_machine(stateMachineArn=env.rt.arn("LabelingStateMachine"))
    definition = json.loads(deployed["definition"])
    result = definition["States"]["Configure"]["Result"]
    assert (result["verify"], result["service"]) == ("false", "GroundTruth")  # verification needs Ground Truth
    definition["States"]["Configure"]["Result"] = {**result, "verify": "true"}
    return env.sfn.create_state_machine(
        name="labeling-with-verification", definition=json.dumps(definition), roleArn=deployed["roleArn"]
    )["stateMachineArn"]


def run_claim(env, machine, hashes, tag):
    from loupe.labeling.trigger import new_claim_id

    claim_id = new_claim_id(hashes) + tag
    assert env.ledger.claim(hashes, claim_id) == hashes
    arn = env.sfn.start_execution(
        stateMachineArn=machine, name=f"verify-{claim_id}", input=json.dumps({"claim_id": claim_id, "images": hashes})
    )["executionArn"]
    return env.wait_execution(arn)


def upload(env, seeds):
    box = {"class_id": 0, "left": 40, "top": 30, "width": 30, "height": 20}
    hashes = [env.put_raw(f"raw/verify/tag-{s}.jpg", samples.jpeg(128, 96, seed=s)) for s in seeds]
    env.answers(f"verify-{seeds[0]}", {sha: [box] for sha in hashes})
    for sha in hashes:
        env.wait_status(sha, "unlabeled")
    return hashes, box


def test_correct_labels_pass_verification(env, verifying_machine):
    hashes, box = upload(env, [4000, 4001])
    done = run_claim(env, verifying_machine, hashes, "a")
    assert done["status"] == "SUCCEEDED", done.get("cause")
    out = json.loads(done["output"])
    assert out["verification"]["job_name"].startswith("loupe-") and "-v-" in out["verification"]["job_name"]
    assert sorted(out["collected"]["labeled"]) == sorted(hashes)
    for sha in hashes:
        entry = env.ledger.get(sha)
        assert entry["status"] == "labeled" and entry["verification"] == "Label correct"
        assert json.loads(entry["annotations"]) == [box]
        assert "pending_annotations" not in entry


def test_rejected_labels_go_back_to_unlabeled(env, verifying_machine):
    hashes, _ = upload(env, [4100, 4101])
    config = env.rt.state_dir / "workforce" / "config.json"
    config.write_text(json.dumps({"noise_rate": 1.0, "seed": 3}))  # every labeler answer is wrong
    try:
        done = run_claim(env, verifying_machine, hashes, "b")
    finally:
        config.unlink()
    assert done["status"] == "FAILED"  # nothing accepted: no new dataset version from this run
    for sha in hashes:
        entry = env.ledger.get(sha)
        assert entry["status"] == "unlabeled"
        assert "verification job" in entry["last_failure"] and "Incorrect label" in entry["last_failure"]
