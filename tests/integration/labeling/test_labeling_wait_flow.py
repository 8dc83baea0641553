"""A labeling run whose wait for its Ground Truth job ends before the job does, through a copy of the deployed
labeling state machine whose manifest step hands the wait 10 seconds instead of the tasks' lifetime + time limit +
wrap-up (a time scale, as test_verification.py copies it with verification on). Same ASL otherwise, same handlers
and stand-ins: the run stops the job, Ground Truth keeps the answered object in the stopped job's output, and the
run labels it; the object nobody answered goes back to unlabeled with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import image_samples as samples
from support.waiting import wait_for

from loupe_local.standins.groundtruth.workforce import Workforce, set_workforce_mode

pytestmark = pytest.mark.integration

SHORT_WAIT = 10


@pytest.fixture(scope="module")
def short_wait_machine(env):
    deployed = env.sfn.describe_state_machine(stateMachineArn=env.rt.arn("LabelingStateMachine"))
    definition = json.loads(deployed["definition"])
    selector = definition["States"]["WriteManifest"]["ResultSelector"]
    assert selector.pop("wait_seconds.$") == "$.Payload.wait_seconds"
    selector["wait_seconds"] = SHORT_WAIT
    return env.sfn.create_state_machine(
        name="labeling-short-wait", definition=json.dumps(definition), roleArn=deployed["roleArn"]
    )["stateMachineArn"]


def test_a_wait_that_ends_before_the_job_keeps_the_answered_labels(env, short_wait_machine):
    from loupe.labeling.trigger import new_claim_id

    groundtruth = next(s for s in env.rt.standins if s.name == "groundtruth")
    hashes = [env.put_raw(f"raw/wait/tag-{s}.jpg", samples.jpeg(128, 96, seed=s)) for s in (4700, 4701)]
    for sha in hashes:
        env.wait_status(sha, "unlabeled")
    claim_id = new_claim_id(hashes) + "w"
    assert env.ledger.claim(hashes, claim_id) == hashes
    before = Workforce(Path(env.rt.state_dir) / "workforce").mode
    set_workforce_mode(env.rt.state_dir, "manual")
    try:
        arn = env.sfn.start_execution(
            stateMachineArn=short_wait_machine,
            name=f"wait-{claim_id}",
            input=json.dumps({"claim_id": claim_id, "images": hashes}),
        )["executionArn"]
        task = wait_for(
            lambda: next((t for t in groundtruth.pending_tasks() if t["sha256"] == hashes[0]), None),
            what="the first image's task",
        )
        box = {"class_id": 0, "left": 20, "top": 10, "width": 40, "height": 30}
        groundtruth.submit(task["id"], {"boxes": [box]})  # the second image's task is never answered
        done = env.wait_execution(arn, timeout=180)
    finally:
        set_workforce_mode(env.rt.state_dir, before)
    history = env.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert "StopLabelingJob" in entered and "LabelingJobFailed" not in entered
    assert done["status"] == "SUCCEEDED", done
    labeled = env.ledger.get(hashes[0])
    assert labeled["status"] == "labeled" and json.loads(labeled["annotations"])  # the answered work is kept
    unanswered = env.ledger.get(hashes[1])
    assert unanswered["status"] == "unlabeled" and "stopped" in unanswered["last_failure"]
