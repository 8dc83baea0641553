"""Ground Truth is closed to new customers: the local stand-in refuses CreateLabelingJob for an account that is not
an existing customer (AccessDeniedException, HTTP 400, SageMaker's common error; AWS documents no error of its own
for it), and a LabelingService=GroundTruth run in such an account fails the way other failures do: caught,
notified, its claims released with the reason. The session's stack acts as a customer; these tests turn that off
for their own calls only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support import image_samples as samples
from support.groundtruth import job_request, put_manifest
from support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def not_a_customer(env: Any) -> Iterator[None]:
    before = env.rt.groundtruth_customer
    env.rt.groundtruth_customer = False
    try:
        yield
    finally:
        env.rt.groundtruth_customer = before


def test_create_labeling_job_is_refused_with_access_denied(env: Any, not_a_customer: None) -> None:
    uri = put_manifest(env, "customers/refused.manifest", [json.dumps({"source-ref": f"s3://{env.raw}/raw/x.jpg"})])
    sagemaker = env.rt.client("sagemaker")
    with pytest.raises(ClientError) as info:
        sagemaker.create_labeling_job(**job_request(env, "loupe-not-a-customer", uri))
    error = info.value.response
    assert error["Error"]["Code"] == "AccessDeniedException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Message"].startswith("You do not have sufficient access to perform this action.")
    assert "no longer open to new customers" in error["Error"]["Message"]
    with pytest.raises(ClientError, match="ResourceNotFound"):  # nothing was created
        sagemaker.describe_labeling_job(LabelingJobName="loupe-not-a-customer")


def test_a_non_customers_ground_truth_run_fails_caught_notified_and_released(env: Any, not_a_customer: None) -> None:
    sns, sqs = env.rt.client("sns"), env.rt.client("sqs")
    queue = sqs.create_queue(QueueName="labeling-not-a-customer")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=env.rt.physical("NotifyTopic"), Protocol="sqs", Endpoint=queue_arn)
    hashes = [env.put_raw(f"raw/customers/tag-{s}.jpg", samples.jpeg(128, 96, seed=s)) for s in (6400, 6401)]
    for sha in hashes:
        env.wait_status(sha, "unlabeled")
    env.answers("customers", {sha: [] for sha in hashes})  # the workforce would answer: the job never exists
    started = env.trigger(hashes)
    assert started["started"] is True
    done = env.wait_execution(started["execution_arn"])
    assert done["status"] == "FAILED"
    history = env.sfn.get_execution_history(executionArn=started["execution_arn"], maxResults=1000)["events"]
    states = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert [s for s in states if s in ("LabelingJob", "LabelingJobFailed", "ReleaseClaims", "NotifyFailure")] == [
        "LabelingJob",
        "LabelingJobFailed",
        "ReleaseClaims",
        "NotifyFailure",
    ]
    for sha in hashes:
        entry = env.ledger.get(sha)
        assert entry["status"] == "unlabeled" and "claim_id" not in entry
        assert "LabelingJob" in entry["last_failure"] and "AccessDeniedException" in entry["last_failure"]

    def failure_message() -> dict[str, Any] | None:
        for msg in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            body = json.loads(msg["Body"])
            if started["claim_id"] in body.get("Message", ""):
                return body
        return None

    body = wait_for(failure_message, what="the SNS failure notification")
    assert "failed in state LabelingJob" in body["Message"]
    assert "no longer open to new customers" in body["Message"]
