"""SageMaker acts with the role it is given (issue 19): a pipeline's jobs read their channels, write their outputs
and run their container with the pipeline's RoleArn; RegisterModel registers with it; a labeling job reads its
manifest and writes its output with its RoleArn. The calls are recorded under that role, and allowed by its grant."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from loupe_local.iam.audit import USAGE_FILE
from loupe_local.standins.pipeline_interpreter import Execution, StepRecord
from loupe_local.standins.pipeline_jobs import JobRunner

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


def usage(rt: Any) -> list[dict[str, Any]]:
    path = Path(rt.state_dir) / USAGE_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


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
    seen = len(usage(audited))
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
        for r in usage(audited)[seen:]
        if any(prefix in res for res in r["resources"]) or r["action"] == "s3:ListBucket"
    ]
    by_role = {(r["action"], r["decision"]) for r in mine if r["principal"] == session.arn}
    # channel download (list + get), the container's own write, the model upload: all as the role, all granted
    assert {("s3:ListBucket", "Allow"), ("s3:GetObject", "Allow"), ("s3:PutObject", "Allow")} <= by_role
    puts = [r["resources"] for r in mine if r["action"] == "s3:PutObject" and r["principal"] == session.arn]
    assert [f"arn:aws:s3:::{bucket}/{prefix}/from-container.txt"] in puts
    assert [f"arn:aws:s3:::{bucket}/{prefix}/out/pipelines-{execution_id}-train/output/model.tar.gz"] in puts
    assert not [r for r in mine if r["decision"] != "Allow"]
