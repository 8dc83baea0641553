"""The Ground Truth and Feature Store runtime stand-ins, called with boto3 like any AWS client would."""

from __future__ import annotations

import json
from pathlib import Path

import botocore.exceptions
import pytest
from support import image_samples as samples
from support.groundtruth import job_request, put_manifest
from support.waiting import wait_for

from loupe import manifests
from loupe.labeling import features
from loupe_local.standins.groundtruth.workforce import Workforce, set_workforce_mode

pytestmark = pytest.mark.integration


def test_ground_truth_job_lifecycle(env):
    sm = env.rt.client("sagemaker")
    data = samples.png(100, 80, seed=5000)
    sha = env.put_raw("raw/standin/one.png", data)
    env.answers("standin", {sha: [{"class_id": 0, "left": 1, "top": 2, "width": 30, "height": 20}]})
    uri = put_manifest(
        env, "standin-tests/in.manifest", [manifests.input_line(f"s3://{env.raw}/raw/standin/one.png", sha)]
    )
    arn = sm.create_labeling_job(**job_request(env, "standin-job-1", uri))["LabelingJobArn"]
    assert arn.endswith(":labeling-job/standin-job-1")
    with pytest.raises(botocore.exceptions.ClientError, match="ResourceInUse"):
        sm.create_labeling_job(**job_request(env, "standin-job-1", uri))
    job = wait_for(
        lambda: (
            (d := sm.describe_labeling_job(LabelingJobName="standin-job-1"))["LabelingJobStatus"] == "Completed" and d
        ),
        what="the job to complete",
    )
    assert job["LabelCounters"]["TotalLabeled"] == 1 and job["LabelCounters"]["FailedNonRetryableError"] == 0
    bucket, key = manifests.split_s3_uri(job["LabelingJobOutput"]["OutputDatasetS3Uri"])
    assert key == "standin-tests/output/standin-job-1/manifests/output/output.manifest"
    line = json.loads(env.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    label = manifests.parse_output_line(line, "boxes")
    assert (label.width, label.height, label.sha256) == (100, 80, sha)
    names = [j["LabelingJobName"] for j in sm.list_labeling_jobs(StatusEquals="Completed")["LabelingJobSummaryList"]]
    assert "standin-job-1" in names


def test_ground_truth_refuses_incomplete_requests(env):
    sm = env.rt.client("sagemaker")
    request = job_request(env, "standin-job-2", f"s3://{env.artifacts}/nothing")
    del request["RoleArn"]
    with pytest.raises(botocore.exceptions.ParamValidationError):  # botocore checks required members first
        sm.create_labeling_job(**request)
    with pytest.raises(botocore.exceptions.ClientError, match="metadata"):
        sm.create_labeling_job(**job_request(env, "standin-job-3", "s3://x/y", LabelAttributeName="a-metadata"))
    with pytest.raises(botocore.exceptions.ClientError, match="ResourceNotFound"):
        sm.describe_labeling_job(LabelingJobName="never-created")


def test_ground_truth_job_can_be_stopped(env):
    sm = env.rt.client("sagemaker")
    config = env.rt.state_dir / "workforce" / "config.json"
    config.write_text(json.dumps({"delay_seconds": 2.0}))  # a slow workforce, so the job is still running
    try:
        uri = put_manifest(
            env, "standin-tests/stop.manifest", [manifests.input_line(f"s3://{env.raw}/raw/x.jpg", "0" * 64)]
        )
        sm.create_labeling_job(**job_request(env, "standin-job-stop", uri))
        sm.stop_labeling_job(LabelingJobName="standin-job-stop")
        assert sm.describe_labeling_job(LabelingJobName="standin-job-stop")["LabelingJobStatus"] in (
            "Stopping",
            "Stopped",
        )
        wait_for(
            lambda: sm.describe_labeling_job(LabelingJobName="standin-job-stop")["LabelingJobStatus"] == "Stopped",
            what="the job to stop",
        )
    finally:
        config.unlink()


def test_a_stopped_job_keeps_what_the_workers_answered(env):
    """StopLabelingJob: "Any results obtained before the job is stopped are placed in the Amazon S3 output bucket"
    (SageMaker API reference). The answered object is labeled in the stopped job's output; the one nobody
    answered fails with its reason."""
    sm = env.rt.client("sagemaker")
    groundtruth = next(s for s in env.rt.standins if s.name == "groundtruth")
    before = Workforce(Path(env.rt.state_dir) / "workforce").mode
    set_workforce_mode(env.rt.state_dir, "manual")
    try:
        refs, hashes = [], []
        for i in range(2):
            key = f"raw/standin/stop-{i}.png"
            hashes.append(env.put_raw(key, samples.png(100, 80, seed=5100 + i)))
            refs.append(f"s3://{env.raw}/{key}")
        lines = [manifests.input_line(ref, sha) for ref, sha in zip(refs, hashes, strict=True)]
        uri = put_manifest(env, "standin-tests/stop-answered.manifest", lines)
        sm.create_labeling_job(**job_request(env, "standin-job-stop-answered", uri))
        tasks = wait_for(
            lambda: (
                len(t := [t for t in groundtruth.pending_tasks() if t["job"] == "standin-job-stop-answered"]) == 2 and t
            ),
            what="the job's two tasks",
        )
        first = next(t for t in tasks if t["source_ref"] == refs[0])
        groundtruth.submit(first["id"], {"boxes": [{"class_id": 0, "left": 5, "top": 6, "width": 30, "height": 20}]})
        sm.stop_labeling_job(LabelingJobName="standin-job-stop-answered")
        job = wait_for(
            lambda: (
                (d := sm.describe_labeling_job(LabelingJobName="standin-job-stop-answered"))["LabelingJobStatus"]
                == "Stopped"
                and d
            ),
            what="the job to stop",
        )
    finally:
        set_workforce_mode(env.rt.state_dir, before)
    assert job["LabelCounters"]["TotalLabeled"] == 1 and job["LabelCounters"]["FailedNonRetryableError"] == 1
    bucket, key = manifests.split_s3_uri(job["LabelingJobOutput"]["OutputDatasetS3Uri"])
    out = [json.loads(line) for line in env.s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()]
    labels = {line["source-ref"]: manifests.parse_output_line(line, "boxes") for line in out}
    assert not labels[refs[0]].failed and len(labels[refs[0]].annotations()) == 1
    assert labels[refs[1]].failed and "stopped" in labels[refs[1]].failure_reason


def test_feature_store_runtime(env):
    fs = env.rt.client("sagemaker-featurestore-runtime")
    group = env.rt.physical("LabelsFeatureGroup")
    record = features.feature_record(
        "s3://b/standin.jpg", "ab" * 32, 10, 20, 3, [], 100.0, "labeling-job/x", "APPROVED", 1
    )
    fs.put_record(FeatureGroupName=group, Record=record)
    older = features.feature_record(
        "s3://b/standin.jpg", "ab" * 32, 10, 20, 3, [], 50.0, "labeling-job/old", "APPROVED", 1
    )
    fs.put_record(FeatureGroupName=group, Record=older)  # the online store keeps the latest event time
    got = features.record_dict(
        fs.get_record(FeatureGroupName=group, RecordIdentifierValueAsString="s3://b/standin.jpg")["Record"]
    )
    assert got["labeling_job"] == "labeling-job/x"
    only = fs.get_record(
        FeatureGroupName=group, RecordIdentifierValueAsString="s3://b/standin.jpg", FeatureNames=["status"]
    )["Record"]
    assert only == [{"FeatureName": "status", "ValueAsString": "APPROVED"}]
    assert "Record" not in fs.get_record(FeatureGroupName=group, RecordIdentifierValueAsString="s3://b/none.jpg")
    batch = fs.batch_get_record(
        Identifiers=[
            {"FeatureGroupName": group, "RecordIdentifiersValueAsString": ["s3://b/standin.jpg", "s3://b/none"]}
        ]
    )
    assert len(batch["Records"]) == 1 and len(batch["Errors"]) == 1
    bad = [dict(item) for item in record]
    bad[2]["ValueAsString"] = "wide"  # image_width is Integral
    with pytest.raises(botocore.exceptions.ClientError, match="Integral"):
        fs.put_record(FeatureGroupName=group, Record=bad)
    with pytest.raises(botocore.exceptions.ClientError, match="not defined"):
        fs.put_record(FeatureGroupName=group, Record=record + [{"FeatureName": "colour", "ValueAsString": "red"}])
    with pytest.raises(botocore.exceptions.ClientError, match="event_time"):
        fs.put_record(FeatureGroupName=group, Record=[i for i in record if i["FeatureName"] != "event_time"])
    with pytest.raises(botocore.exceptions.ClientError, match="does not exist"):
        fs.put_record(FeatureGroupName="no-such-group", Record=record)
    fs.delete_record(FeatureGroupName=group, RecordIdentifierValueAsString="s3://b/standin.jpg", EventTime="200")
    assert "Record" not in fs.get_record(FeatureGroupName=group, RecordIdentifierValueAsString="s3://b/standin.jpg")
