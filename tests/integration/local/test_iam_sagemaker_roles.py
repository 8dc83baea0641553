"""SageMaker acts with the role it is given (issue 19): a pipeline's jobs read their channels, write their outputs
and run their container with the pipeline's RoleArn; RegisterModel registers with it; a labeling job reads its
manifest and writes its output with its RoleArn. The calls are recorded under that role, and allowed by its grant."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import image_samples as samples
from support.groundtruth import job_request
from support.iam_gate import usage, usage_lines
from support.waiting import wait_for

from loupe import manifests
from loupe_local.standins.pipelines.interpreter import Execution, StepRecord
from loupe_local.standins.pipelines.jobs import JobRunner

pytestmark = pytest.mark.integration

# a training container of the test's own: it says which key it was given and writes with it
PROBE = """
import os, pathlib, boto3
key = os.environ["AWS_ACCESS_KEY_ID"]
data = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"], "data.txt").read_text()
pathlib.Path(os.environ["SM_MODEL_DIR"], "whoami.txt").write_text(key + "\\n" + data)
bucket, prefix = os.environ["PROBE_BUCKET"], os.environ["PROBE_PREFIX"]
boto3.client("s3").put_object(Bucket=bucket, Key=prefix + "/from-container.txt", Body=key.encode())
"""


@pytest.fixture
def audited(local_aws: Any) -> Any:
    before = local_aws.iam_mode
    local_aws.set_iam("audit")
    try:
        yield local_aws
    finally:
        local_aws.set_iam(before)


def test_a_pipeline_training_job_moves_its_data_and_runs_as_the_pipeline_role(audited: Any, tmp_path: Path) -> None:
    role = audited.arn("SageMakerExecutionRole")
    session = audited.role_session(role)
    assert session is not None, "SageMaker's role has a session once IAM is checked"
    bucket = audited.physical("ArtifactBucket")
    prefix = f"pipeline/iam-probe-{uuid.uuid4().hex[:8]}"
    audited.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/in/data.txt", Body=b"channel data")
    code = tmp_path / "code"
    code.mkdir()
    (code / "whoami.py").write_text(PROBE)
    execution_id = uuid.uuid4().hex[:12]
    ex = Execution(
        arn=f"arn:aws:sagemaker:{audited.region}:123456789012:pipeline/probe/execution/{execution_id}",
        pipeline_name="probe",
        pipeline_arn=f"arn:aws:sagemaker:{audited.region}:123456789012:pipeline/probe",
        display_name="probe",
        description="",
        parameters={},
        definition={},
        root=tmp_path / "execution",
        role_arn=role,
    )
    ex.root.mkdir()
    seen = usage_lines(audited.state_dir)
    JobRunner(audited, code).training(
        ex,
        StepRecord(name="Train", type="Training"),
        {
            "HyperParameters": {"sagemaker_program": "whoami.py"},
            "Environment": {"PROBE_BUCKET": bucket, "PROBE_PREFIX": prefix},
            "InputDataConfig": [
                {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": f"s3://{bucket}/{prefix}/in/"}}}
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{prefix}/out"},
        },
    )
    s3 = audited.client("s3")
    model = s3.get_object(Bucket=bucket, Key=f"{prefix}/out/pipelines-{execution_id}-train/output/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(model["Body"].read())) as tar:
        member = tar.extractfile("whoami.txt")
        assert member is not None
        key, data = member.read().decode().split("\n")
    assert (key, data) == (session.access_key_id, "channel data")  # the container ran with the role's session
    mine = [
        r
        for r in usage(audited, seen)
        if any(prefix in res for res in r["resources"]) or r["action"] == "s3:ListBucket"
    ]
    by_role = {(r["action"], r["decision"]) for r in mine if r["principal"] == session.arn}
    # channel download (list + get), the container's own write, the model upload: all as the role, all granted
    assert {("s3:ListBucket", "Allow"), ("s3:GetObject", "Allow"), ("s3:PutObject", "Allow")} <= by_role
    puts = [r["resources"] for r in mine if r["action"] == "s3:PutObject" and r["principal"] == session.arn]
    assert [f"arn:aws:s3:::{bucket}/{prefix}/from-container.txt"] in puts
    assert [f"arn:aws:s3:::{bucket}/{prefix}/out/pipelines-{execution_id}-train/output/model.tar.gz"] in puts
    assert not [r for r in mine if r["decision"] != "Allow"]


def test_a_labeling_job_reads_its_manifest_and_images_and_writes_its_output_as_its_role(audited: Any) -> None:
    role = audited.arn("SageMakerExecutionRole")
    session = audited.role_session(role)
    assert session is not None
    s3, sm = audited.client("s3"), audited.client("sagemaker")
    raw, artifacts = audited.physical("RawBucket"), audited.physical("ArtifactBucket")
    tag = uuid.uuid4().hex[:8]
    image = samples.png(64, 48, seed=7211)
    sha = hashlib.sha256(image).hexdigest()
    image_key, manifest_key = f"iam-gt-{tag}/a.png", f"labeling/iam-gt-{tag}/input.manifest"
    s3.put_object(Bucket=raw, Key=image_key, Body=image)
    workforce = Path(audited.state_dir) / "workforce"
    workforce.mkdir(parents=True, exist_ok=True)
    box = {"class_id": 0, "left": 4, "top": 6, "width": 30, "height": 20}
    (workforce / f"iam-gt-{tag}.jsonl").write_text(json.dumps({"sha256": sha, "annotations": [box]}) + "\n")
    line = manifests.input_line(f"s3://{raw}/{image_key}", sha)
    s3.put_object(Bucket=artifacts, Key=manifest_key, Body=(line + "\n").encode())
    name = f"iam-gt-{tag}"
    seen = usage_lines(audited.state_dir)
    sm.create_labeling_job(
        **job_request(
            SimpleNamespace(artifacts=artifacts),
            name,
            f"s3://{artifacts}/{manifest_key}",
            RoleArn=role,
            OutputConfig={"S3OutputPath": f"s3://{artifacts}/labeling/iam-gt-{tag}/output/"},
        )
    )
    job = wait_for(
        lambda: (
            (d := sm.describe_labeling_job(LabelingJobName=name))["LabelingJobStatus"] in ("Completed", "Failed") and d
        ),
        what=f"labeling job {name} to finish",
    )
    assert job["LabelingJobStatus"] == "Completed", job.get("FailureReason")
    mine = [r for r in usage(audited, seen) if r["principal"] == session.arn]
    calls = {(r["action"], r["resources"][0], r["decision"]) for r in mine if f"iam-gt-{tag}" in r["resources"][0]}
    assert (("s3:GetObject", f"arn:aws:s3:::{artifacts}/{manifest_key}", "Allow")) in calls
    assert (("s3:GetObject", f"arn:aws:s3:::{raw}/{image_key}", "Allow")) in calls
    output = job["LabelingJobOutput"]["OutputDatasetS3Uri"]
    assert ("s3:PutObject", "arn:aws:s3:::" + output.removeprefix("s3://"), "Allow") in calls
    # the workers' browser's CORS check is S3's own, not a call of the role's
    assert not [r for r in mine if r["action"] == "s3:GetBucketCORS"]
