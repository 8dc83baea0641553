"""The local SageMaker job runner stages S3 prefixes into job folders: no key or request path may leave them.

A key under a job's input prefix (``../../evil.txt``, an empty segment, a backslash walk), a ChannelName, a
LocalPath or a property file's FilePath that would land outside the job's ``/opt/ml`` fails the step with the
reason, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from support.hostile_keys import files_under, put_hostile_keys

from loupe_local.standins.pipelines.interpreter import Execution, StepFailed, StepRecord
from loupe_local.standins.pipelines.jobs import JobRunner

TRAINING_DIR = Path(__file__).resolve().parents[3] / "training"


class _Host:
    region = "us-east-1"

    def __init__(self, s3) -> None:
        self.s3 = s3

    def client(self, service: str):
        assert service == "s3"
        return self.s3


@pytest.fixture
def runner(tmp_path):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="art")
        s3.put_object(Bucket="art", Key="datasets/v1/dataset.json", Body=b"{}")
        yield JobRunner(_Host(s3), TRAINING_DIR), s3


def _execution(tmp_path: Path) -> Execution:
    return Execution(
        arn="arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training/execution/exec0001",
        pipeline_name="loupe-training",
        pipeline_arn="arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training",
        display_name="exec0001",
        description="",
        parameters={},
        definition={"Steps": []},
        root=tmp_path / "exec",
    )


def _processing(uri: str, local_path: str = "/opt/ml/processing/input/dataset") -> dict:
    return {
        "AppSpecification": {"ImageUri": "img", "ContainerEntrypoint": ["python3", "job.py"]},
        "ProcessingInputs": [{"InputName": "dataset", "S3Input": {"S3Uri": uri, "LocalPath": local_path}}],
    }


def _training(channel: str = "dataset", checkpoint: str | None = None) -> dict:
    args: dict = {
        "HyperParameters": {"sagemaker_program": "train.py"},
        "InputDataConfig": [
            {"ChannelName": channel, "DataSource": {"S3DataSource": {"S3Uri": "s3://art/datasets/v1/"}}}
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://art/pipeline/training"},
    }
    if checkpoint:
        args["CheckpointConfig"] = {"S3Uri": checkpoint, "LocalPath": "/opt/ml/checkpoints"}
    return args


def test_a_processing_input_with_escaping_keys_fails_the_step_and_writes_nothing(runner, tmp_path):
    job, s3 = runner
    put_hostile_keys(s3, "art", "datasets/v1/", tmp_path)
    record = StepRecord(name="Prepare", type="Processing")
    with pytest.raises(StepFailed, match="input s3://art/datasets/v1/: key 'datasets/v1/.*' escapes"):
        job.processing(_execution(tmp_path), {}, record, _processing("s3://art/datasets/v1/"))
    assert files_under(tmp_path) == set()


def test_a_processing_local_path_leaving_opt_ml_fails_the_step(runner, tmp_path):
    job, _ = runner
    record = StepRecord(name="Prepare", type="Processing")
    args = _processing("s3://art/datasets/v1/", "/opt/ml/../../../evil")
    with pytest.raises(StepFailed, match=r"processing path /opt/ml/\.\./\.\./\.\./evil: key .* escapes"):
        job.processing(_execution(tmp_path), {}, record, args)
    assert files_under(tmp_path) == set()


def test_a_channel_name_leaving_the_input_folder_fails_the_step(runner, tmp_path):
    job, _ = runner
    record = StepRecord(name="Train", type="Training")
    with pytest.raises(StepFailed, match=r"channel \.\.: key '\.\.' escapes"):
        job.training(_execution(tmp_path), record, _training(channel=".."))
    assert files_under(tmp_path) == set()


def test_a_checkpoint_prefix_with_escaping_keys_fails_the_step_and_writes_nothing(runner, tmp_path):
    job, s3 = runner
    put_hostile_keys(s3, "art", "pipeline/checkpoints/exec0001/", tmp_path)
    record = StepRecord(name="Train", type="Training")
    with pytest.raises(StepFailed, match="key 'pipeline/checkpoints/exec0001/.*' escapes"):
        job.training(_execution(tmp_path), record, _training(checkpoint="s3://art/pipeline/checkpoints/exec0001"))
    assert not [f for f in files_under(tmp_path) if "input/data/dataset/" not in f]


def test_checkpoint_sync_sends_a_stable_snapshot_and_retries_a_file_rewritten_while_read(runner, tmp_path, monkeypatch):
    # last.pt is rewritten in place every epoch while the sync runs (a CI run once failed the job on the torn read)
    job, s3 = runner
    folder = tmp_path / "ckpt"
    (folder / "run" / "weights").mkdir(parents=True)
    last = folder / "run" / "weights" / "last.pt"
    last.write_bytes(b"epoch-1" * 1000)
    real_read = Path.read_bytes

    def read_then_rewritten(self: Path) -> bytes:
        body = real_read(self)
        if self == last:  # the trainer writes the next epoch while the sync holds the old bytes
            self.write_bytes(b"epoch-2" * 1200)
        return body

    sent: dict[str, tuple[int, int]] = {}
    monkeypatch.setattr(Path, "read_bytes", read_then_rewritten)
    job._sync_up(folder, "s3://art/pipeline/checkpoints/exec0001", sent)
    assert s3.list_objects_v2(Bucket="art", Prefix="pipeline/checkpoints/")["KeyCount"] == 0  # torn: not sent
    assert sent == {}

    monkeypatch.setattr(Path, "read_bytes", real_read)
    job._sync_up(folder, "s3://art/pipeline/checkpoints/exec0001", sent)
    got = s3.get_object(Bucket="art", Key="pipeline/checkpoints/exec0001/run/weights/last.pt")["Body"].read()
    assert got == b"epoch-2" * 1200
    assert set(sent) == {"run/weights/last.pt"}
