"""Scheduled retraining in the local AWS: the template's RetrainSchedule fires the training state machine with no
dataset, which reads ``datasets/latest.json`` through the S3 AWS SDK integration (real ASL in moto's engine).

(a) no dataset version yet -> the run ends cleanly as NO_DATASET, no pipeline execution;
(b) ``datasets/latest.json`` names a version -> the pipeline execution starts on that version.

The bucket and the latest.json key are the session's shared ones: each test restores what it found.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.waiting import wait_until

pytestmark = [pytest.mark.integration]

LATEST = "datasets/latest.json"


@pytest.fixture
def latest(local_aws) -> Iterator[dict[str, Any]]:
    """The shared ``datasets/latest.json``: removed for the test, put back after it."""
    s3 = local_aws.client("s3")
    bucket = local_aws.physical("ArtifactBucket")
    try:
        saved: bytes | None = s3.get_object(Bucket=bucket, Key=LATEST)["Body"].read()
    except s3.exceptions.NoSuchKey:
        saved = None
    s3.delete_object(Bucket=bucket, Key=LATEST)
    yield {"s3": s3, "bucket": bucket}
    if saved is None:
        s3.delete_object(Bucket=bucket, Key=LATEST)
    else:
        s3.put_object(Bucket=bucket, Key=LATEST, Body=saved, ContentType="application/json")


def _retrain_rule(local_aws) -> tuple[str, dict[str, Any]]:
    """The schedule rule the template's ``Retrain`` event made, found by its target (the training workflow), and
    the input that target gives the workflow."""
    machine = local_aws.arn("TrainingStateMachine")
    found = [
        (name, target)
        for name, spec in local_aws.router.schedules.items()
        for target in spec["targets"]
        if target["Arn"] == machine
    ]
    assert len(found) == 1, local_aws.router.schedules
    name, target = found[0]
    return name, json.loads(target["Input"])


def _fire_and_finish(local_aws, timeout: float = 60.0) -> dict[str, Any]:
    """Fire the retrain schedule as its timer does; the execution it started, once it has ended."""
    sfn = local_aws.client("stepfunctions")
    machine = local_aws.arn("TrainingStateMachine")

    def listed() -> set[str]:
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
        return {e["executionArn"] for page in pages for e in page["executions"]}

    rule, schedule_input = _retrain_rule(local_aws)
    assert "dataset_uri" not in schedule_input  # scheduled retraining names no dataset: the workflow resolves it

    def scheduled(arns: set[str]) -> set[str]:  # other tests' labeling runs may start trainings meanwhile
        return {a for a in arns if json.loads(sfn.describe_execution(executionArn=a)["input"]) == schedule_input}

    before = listed()
    local_aws.router.fire_schedule(rule)
    new = wait_until(lambda: scheduled(listed() - before), timeout=10)
    assert len(new) == 1, f"the schedule started {len(new)} executions"
    arn = new.pop()
    done = wait_until(
        lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d, timeout=timeout
    )
    assert done, f"{arn} still running after {timeout}s"
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    return {**done, "entered": entered}


def test_schedule_without_any_dataset_version_ends_as_no_dataset(local_aws, latest) -> None:
    run = _fire_and_finish(local_aws)
    assert run["status"] == "SUCCEEDED", (run.get("error"), run.get("cause"), run["entered"])
    assert run["entered"] == ["HasDataset", "ReadLatestDataset", "NothingToTrain"]
    assert json.loads(run["output"])["status"] == "NO_DATASET"


def test_schedule_retrains_on_the_version_latest_json_names(local_aws, latest, tmp_path) -> None:
    from loupe_training.tiny import make_tiny_version

    s3, bucket = latest["s3"], latest["bucket"]
    make_tiny_version(tmp_path, count=12, size=64, seed=7)
    prefix = "datasets/test-scheduled-v7/"
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, prefix + path.relative_to(tmp_path).as_posix())
    uri = f"s3://{bucket}/{prefix}"
    s3.put_object(
        Bucket=bucket,
        Key=LATEST,
        Body=json.dumps({"version": 7, "uri": uri, "digest": "0" * 64}).encode(),
        ContentType="application/json",
    )

    run = _fire_and_finish(local_aws)
    assert run["status"] == "SUCCEEDED", (run.get("error"), run.get("cause"), run["entered"])
    assert run["entered"][:4] == ["HasDataset", "ReadLatestDataset", "UseLatestDataset", "ChooseEpochs"]
    assert "RetrainEpochs" in run["entered"] and "StartPipeline" in run["entered"]
    pipeline_arn = json.loads(run["output"])["pipeline"]["pipeline_execution_arn"]

    sm = local_aws.client("sagemaker")
    try:
        params = {
            p["Name"]: p["Value"]
            for p in sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=pipeline_arn)["PipelineParameters"]
        }
        desc = sm.describe_pipeline_execution(PipelineExecutionArn=pipeline_arn)
    finally:  # the run itself is the pipeline tests' business: free the shared runner at once
        sm.stop_pipeline_execution(PipelineExecutionArn=pipeline_arn)
    assert params["DatasetS3Uri"] == uri
    assert params["Epochs"] == str(local_aws.parameter_values["RetrainEpochs"])
    assert desc["PipelineExecutionDisplayName"] == "dataset-v7"
