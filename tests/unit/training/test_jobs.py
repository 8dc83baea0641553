"""Warm-start weights and champion lookup against S3 / the model registry (moto)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from support.archives import tar_gz
from support.hostile_keys import escaping_tar_gz, files_under, put_hostile_keys

from loupe.safe_paths import UnsafeKeyError
from loupe_training.entry import champion_weights_uri
from loupe_training.jobs import WEIGHTS_MARKER, fetch_weights, find_champion, unpack_model_dir
from loupe_training.train import TrainingError


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sm = boto3.client("sagemaker", region_name="us-east-1")
        s3.create_bucket(Bucket="art")
        sm.create_model_package_group(ModelPackageGroupName="g")
        yield s3, sm


def test_no_warm_start_writes_the_marker(tmp_path):
    assert fetch_weights("none", tmp_path / "w") is None
    assert (tmp_path / "w" / WEIGHTS_MARKER).is_file()


def test_weights_from_a_training_artifact(aws, tmp_path):
    s3, _ = aws
    s3.put_object(
        Bucket="art", Key="train/job/output/model.tar.gz", Body=tar_gz({"best.pt": b"weights", "model.onnx": b"x"})
    )
    got = fetch_weights("s3://art/train/job/output/model.tar.gz", tmp_path / "w", s3=s3)
    assert got is not None and got.read_bytes() == b"weights"


def test_an_artifact_without_weights_is_an_error(aws, tmp_path):
    s3, _ = aws
    s3.put_object(Bucket="art", Key="x/model.tar.gz", Body=tar_gz({"model.onnx": b"x"}))
    with pytest.raises(TrainingError, match="no .pt weights"):
        fetch_weights("s3://art/x/model.tar.gz", tmp_path / "w", s3=s3)


def _package(sm, status: str, url: str, weights: str) -> str:
    return sm.create_model_package(
        ModelPackageGroupName="g",
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": url}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["a/b"],
        },
        CustomerMetadataProperties={"weights_uri": weights},
    )["ModelPackageArn"]


def test_champion_is_the_latest_approved_package(aws, tmp_path):
    s3, sm = aws
    assert find_champion(sm, s3, "g", tmp_path / "c") is None
    assert champion_weights_uri(sm, "g") == ""
    s3.put_object(Bucket="art", Key="pkg/1/model.tar.gz", Body=tar_gz({"model.onnx": b"champion"}))
    arn = _package(sm, "Approved", "s3://art/pkg/1/model.tar.gz", "s3://art/train/1/model.tar.gz")
    _package(sm, "PendingManualApproval", "s3://art/pkg/2/model.tar.gz", "s3://art/train/2/model.tar.gz")
    champ = find_champion(sm, s3, "g", tmp_path / "c")
    assert champ["arn"] == arn and champ["model"].read_bytes() == b"champion"
    assert champion_weights_uri(sm, "g") == "s3://art/train/1/model.tar.gz"


def test_warm_start_weights_prefix_with_escaping_keys_is_refused(aws, tmp_path):
    s3, _ = aws
    s3.put_object(Bucket="art", Key="weights/run1/best.pt", Body=b"weights")
    put_hostile_keys(s3, "art", "weights/run1/", tmp_path)
    with pytest.raises(UnsafeKeyError, match="key 'weights/run1/.*' escapes"):
        fetch_weights("s3://art/weights/run1/", tmp_path / "w", s3=s3)
    assert files_under(tmp_path) == set()


def test_a_weights_archive_with_an_escaping_member_is_refused(aws, tmp_path):
    s3, _ = aws
    s3.put_object(Bucket="art", Key="t/model.tar.gz", Body=escaping_tar_gz({"best.pt": b"w"}, "../../../evil.pt"))
    with pytest.raises(UnsafeKeyError, match=r"key '\.\./\.\./\.\./evil\.pt' escapes"):
        fetch_weights("s3://art/t/model.tar.gz", tmp_path / "w", s3=s3)
    assert files_under(tmp_path) == set()


def test_a_champion_package_with_an_escaping_member_is_refused(aws, tmp_path):
    s3, sm = aws
    s3.put_object(Bucket="art", Key="pkg/9/model.tar.gz", Body=escaping_tar_gz({"model.onnx": b"m"}, "/abs.onnx"))
    _package(sm, "Approved", "s3://art/pkg/9/model.tar.gz", "s3://art/t/9")
    with pytest.raises(UnsafeKeyError, match="key '/abs.onnx' escapes"):
        find_champion(sm, s3, "g", tmp_path / "c")
    assert not (tmp_path / "c" / "model").exists()


def test_a_training_output_with_an_escaping_member_is_refused(tmp_path):
    archive = tmp_path / "out" / "model.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(escaping_tar_gz({"model.onnx": b"m"}, "../evil.txt"))
    with pytest.raises(UnsafeKeyError, match="key '../evil.txt' escapes"):
        unpack_model_dir(archive.parent, tmp_path / "x" / "model")
    assert files_under(tmp_path) == {"out/model.tar.gz"}
