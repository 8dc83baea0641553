"""The labeling app end to end on the local stack: a Step Functions execution waits on ``.waitForTaskToken``; a job
is created with its token; two labelers signed in through Cognito take the image through the HTTP API (JWT
checked), see it by its presigned GET and disagree; a reviewer resolves it; the output manifest is written where
the labeling run reads it and SendTaskSuccess resumes the execution. Group checks (403) and bad answers too."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

import pytest
from support import image_samples as samples
from support.console_users import api, signed_in
from support.waiting import wait_for

from loupe import manifests
from loupe.labeling.config import LABEL_ATTRIBUTE
from loupe.labeling.task_store import TaskStore
from loupe.labeling.workforce_jobs import JobImage, create_job
from loupe_local.standins.httpapi.service import HttpApis

W, H = 160, 120


@pytest.fixture(scope="module")
def base(local_aws: Any) -> str:
    return next(s for s in local_aws.standins if isinstance(s, HttpApis)).urls["ConsoleApi"]


@pytest.fixture(scope="module")
def people(local_aws: Any) -> dict[str, dict[str, str]]:
    return {
        "ann": signed_in(local_aws, "labelers"),
        "bob": signed_in(local_aws, "labelers"),
        "rev": signed_in(local_aws, "reviewers"),
        "app": signed_in(local_aws, "approvers"),
    }


@pytest.fixture(scope="module")
def store(local_aws: Any) -> TaskStore:
    dynamodb = local_aws.resource("dynamodb")
    return TaskStore(dynamodb.Table(local_aws.physical("LabelingTasksTable")))


def _waiting_execution(local_aws: Any) -> tuple[str, str]:
    """A tiny state machine that hands its task token to a queue and waits for it; (execution ARN, token)."""
    sqs, sfn = local_aws.client("sqs"), local_aws.client("stepfunctions")
    tag = uuid.uuid4().hex[:8]
    queue = sqs.create_queue(QueueName=f"labeling-app-token-{tag}")["QueueUrl"]
    definition = {
        "StartAt": "WaitForLabels",
        "States": {
            "WaitForLabels": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 300,
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name=f"labeling-app-wait-{tag}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/labeling-app-test",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]

    def token() -> str | None:
        got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages") or []
        return json.loads(got[0]["Body"])["token"] if got else None

    return execution, wait_for(token, 60, "the execution's task token in the queue")


def _image(local_aws: Any, seed: int) -> tuple[str, bytes]:
    data = samples.jpeg(W, H, seed=seed)
    key = f"raw/labeling-app/{uuid.uuid4().hex[:8]}.jpg"
    local_aws.client("s3").put_object(Bucket=local_aws.physical("RawBucket"), Key=key, Body=data)
    return f"s3://{local_aws.physical('RawBucket')}/{key}", data


def _job(local_aws: Any, store: TaskStore, token: str, source_ref: str, labelers: int) -> str:
    name = f"loupe-app-{uuid.uuid4().hex[:8]}"
    create_job(
        store,
        name,
        token,
        [
            JobImage(
                source_ref,
                uuid.uuid4().hex * 2,
                W,
                H,
                [{"label": "scratch", "left": 5, "top": 5, "width": 9, "height": 9}],
            )
        ],
        {"0": "scratch"},
        f"s3://{local_aws.physical('ArtifactBucket')}/labeling/{name}/output/",
        local_aws.physical("RawBucket"),
        __import__("time").time(),
        labelers_per_image=labelers,
        lifetime_seconds=3600,
    )
    return name


def _take(base: str, user: dict[str, str], job: str) -> dict[str, Any]:
    """The user's next task of ``job`` (other tests' jobs may be queued before it: answered with no box)."""
    for _ in range(20):
        status, _, body = api(f"{base}/labeling/tasks/next", token=user["id"])
        assert status == 200 and body["task"], body
        if body["task"]["job_name"] == job:
            return body["task"]
        api(f"{base}/labeling/tasks/{body['task']['assignment_id']}", "POST", user["id"], {"boxes": []})
    raise AssertionError(f"no task of {job}")


def test_two_labelers_disagree_a_reviewer_resolves_and_the_execution_resumes(
    local_aws: Any, base: str, people: dict[str, dict[str, str]], store: TaskStore
) -> None:
    execution, token = _waiting_execution(local_aws)
    source_ref, data = _image(local_aws, seed=7301)
    job = _job(local_aws, store, token, source_ref, labelers=2)

    ann = _take(base, people["ann"], job)
    assert ann["prefill"] == [{"label": "scratch", "left": 5, "top": 5, "width": 9, "height": 9}]
    assert "X-Amz-Expires=300" in ann["image_url"]
    with urllib.request.urlopen(ann["image_url"], timeout=15) as got:  # noqa: S310 - the local S3's presigned URL
        assert got.read() == data
    bob = _take(base, people["bob"], job)
    assert bob["assignment_id"] != ann["assignment_id"]

    left = {"label": "scratch", "left": 10, "top": 10, "width": 40, "height": 20}
    right = {"label": "scratch", "left": 100, "top": 60, "width": 30, "height": 30}
    status, _, body = api(
        f"{base}/labeling/tasks/{ann['assignment_id']}", "POST", people["ann"]["id"], {"boxes": [left]}
    )
    assert (status, body["image"]) == (200, "answered"), body
    status, _, body = api(
        f"{base}/labeling/tasks/{bob['assignment_id']}", "POST", people["bob"]["id"], {"boxes": [right]}
    )
    assert (status, body["image"]) == (200, "review"), body
    # a second submit of the same assignment: 409, the first answer stays
    status, _, body = api(f"{base}/labeling/tasks/{bob['assignment_id']}", "POST", people["bob"]["id"], {"boxes": []})
    assert status == 409 and "already answered" in body["message"]

    status, _, body = api(f"{base}/review/next", token=people["rev"]["id"])
    assert status == 200 and body["item"] and body["item"]["job_name"] == job, body
    item = body["item"]
    assert sorted(item["answers"], key=lambda boxes: boxes[0]["left"]) == [[left], [right]]
    status, _, body = api(f"{base}/review/{item['item_id']}", "POST", people["rev"]["id"], {"boxes": [right]})
    assert (status, body["status"]) == (200, "final"), body

    done = wait_for(
        lambda: (
            (d := local_aws.client("stepfunctions").describe_execution(executionArn=execution))["status"] != "RUNNING"
            and d
        ),
        60,
        "the waiting execution to resume",
    )
    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output["job_name"] == job and output["labeled"] == 1
    key = f"labeling/{job}/output/{job}/manifests/output/output.manifest"
    assert output["output_uri"] == f"s3://{local_aws.physical('ArtifactBucket')}/{key}"
    text = local_aws.client("s3").get_object(Bucket=local_aws.physical("ArtifactBucket"), Key=key)["Body"].read()
    labels, problems = manifests.parse_output_manifest(text.decode(), LABEL_ATTRIBUTE)
    assert problems == [] and len(labels) == 1
    assert labels[0].source_ref == source_ref and labels[0].annotations() == [
        {"class_id": 0, "left": 100, "top": 60, "width": 30, "height": 30}
    ]
    meta = json.loads(text)[f"{LABEL_ATTRIBUTE}-metadata"]
    assert meta["loupe-final-by"] == "reviewer" and meta["loupe-agreement"] == 0.5 and meta["loupe-labelers"] == 2


def test_a_labeler_cannot_review_and_a_reviewer_cannot_label(base: str, people: dict[str, dict[str, str]]) -> None:
    for path, method, who, group in (
        ("/review/next", "GET", "ann", "reviewers"),
        ("/review/loupe-x.0", "POST", "ann", "reviewers"),
        ("/review/next", "GET", "app", "reviewers"),
        ("/labeling/tasks/next", "GET", "rev", "labelers"),
        ("/labeling/tasks/abc", "POST", "rev", "labelers"),
    ):
        status, _, body = api(f"{base}{path}", method, people[who]["id"], {"boxes": []} if method == "POST" else None)
        assert status == 403 and group in body["message"], (path, who, status, body)
    for path, method in (("/labeling/tasks/next", "GET"), ("/review/loupe-x.0", "POST")):
        assert api(f"{base}{path}", method, body={} if method == "POST" else None)[0] == 401


def test_bad_answers_get_a_message_and_the_task_still_takes_a_good_one(
    local_aws: Any, base: str, people: dict[str, dict[str, str]], store: TaskStore
) -> None:
    source_ref, _ = _image(local_aws, seed=7302)
    job = _job(local_aws, store, f"no-execution-{uuid.uuid4().hex}", source_ref, labelers=1)
    task = _take(base, people["ann"], job)
    url = f"{base}/labeling/tasks/{task['assignment_id']}"
    for body, status, words in (
        (
            {"boxes": [{"label": "scratch", "left": 150, "top": 0, "width": 20, "height": 10}]},
            400,
            "leaves the 160x120",
        ),
        ({"boxes": [{"label": "scratch", "left": 1, "top": 1, "width": 0, "height": 10}]}, 400, "is empty"),
        ({"boxes": [{"label": "rust", "left": 1, "top": 1, "width": 5, "height": 5}]}, 400, "not one of this job's"),
        (b"not json", 400, "must be JSON"),
        (json.dumps({"boxes": [], "pad": "x" * 20000}).encode(), 413, "at most"),
    ):
        got, _, answer = api(url, "POST", people["ann"]["id"], body)
        assert got == status and words in answer["message"], (body, got, answer)
    assert store.answers(job, 0) == []
    got, _, answer = api(f"{base}/labeling/tasks/{task['assignment_id']}", "POST", people["bob"]["id"], {"boxes": []})
    assert got == 403, answer  # bob is a labeler, but this is ann's assignment
    got, _, answer = api(url, "POST", people["ann"]["id"], {"boxes": []})
    assert (got, answer["image"]) == (200, "final"), answer
