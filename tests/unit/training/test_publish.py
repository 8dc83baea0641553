"""The code publisher (CloudFormation custom resource) ships exactly the container files of training/."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from loupe_training import publish

REPO = Path(__file__).resolve().parents[3]
TRAINING = REPO / "training"
PACKAGE = TRAINING / "loupe_training"
LOUPE = REPO / "layers" / "common" / "loupe"


def test_the_container_shims_are_the_repositorys_files():
    blob = publish.build_sourcedir(TRAINING, LOUPE, "v-test")
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for shim in ("train.py", "job.py"):
            assert tar.extractfile(shim).read() == (TRAINING / shim).read_bytes()


def test_sourcedir_layout_and_reproducibility():
    blob = publish.build_sourcedir(TRAINING, LOUPE, "v-test")
    assert blob == publish.build_sourcedir(TRAINING, LOUPE, "v-test")
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        names = set(tar.getnames())
        assert tar.extractfile("CODE_VERSION").read() == b"v-test\n"
        # the jobs install the hashed lock, under the name the training toolkit installs
        assert tar.extractfile("requirements.txt").read() == (PACKAGE / "requirements.lock").read_bytes()
    assert {
        "train.py",
        "job.py",
        "requirements.txt",
        "loupe_training/entry.py",
        "loupe_training/jobs.py",
        "loupe/datasets.py",
        "loupe/imaging.py",
    } <= names
    assert not any("__pycache__" in n for n in names)


class _Capture:
    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def __call__(self, req, timeout):  # urllib.request.urlopen stand-in: CloudFormation's response URL
        self.bodies.append(json.loads(req.data))
        return io.BytesIO(b"")


@pytest.fixture
def cfn(monkeypatch):
    capture = _Capture()
    monkeypatch.setattr(publish.urllib.request, "urlopen", lambda req, timeout: _Ctx(capture(req, timeout)))
    monkeypatch.setenv("LOUPE_PACKAGE_DIR", str(LOUPE))
    return capture


class _Ctx:
    def __init__(self, inner):
        self.inner = inner

    def __enter__(self):
        return self.inner

    def __exit__(self, *exc):
        return False


def _event(kind: str, bucket: str = "art") -> dict:
    return {
        "RequestType": kind,
        "ResponseURL": "https://cfn.example/resp",
        "StackId": "s",
        "RequestId": "r",
        "LogicalResourceId": "TrainingCode",
        "ResourceProperties": {"Bucket": bucket, "Key": "code/training/sourcedir.tar.gz", "CodeVersion": "7"},
    }


def test_create_uploads_and_reports_success(cfn):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="art")
        data = publish.lambda_handler(_event("Create"), None, s3=s3)
        obj = s3.get_object(Bucket="art", Key="code/training/sourcedir.tar.gz")["Body"].read()
    assert cfn.bodies[-1]["Status"] == "SUCCESS"
    assert data["SourceDirUri"] == "s3://art/code/training/sourcedir.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(obj)) as tar:
        assert tar.extractfile("CODE_VERSION").read() == b"7\n"


def test_failure_is_reported_to_cloudformation(cfn):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")  # no bucket: the upload fails
        publish.lambda_handler(_event("Update", bucket="missing"), None, s3=s3)
    assert cfn.bodies[-1]["Status"] == "FAILED"
    assert "NoSuchBucket" in cfn.bodies[-1]["Reason"]


def test_delete_keeps_the_object_and_succeeds(cfn):
    publish.lambda_handler({**_event("Delete"), "PhysicalResourceId": "s3://art/k"}, None, s3=object())
    assert cfn.bodies[-1]["Status"] == "SUCCESS" and cfn.bodies[-1]["PhysicalResourceId"] == "s3://art/k"


@pytest.mark.parametrize(
    "url",
    ["https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?sig=1", "http://127.0.0.1:4566/b/k"],
)
def test_the_answer_goes_to_cloudformations_https_url_or_the_loopback(cfn, url):
    """The local AWS's presigned response URL is plain http on the loopback interface; CloudFormation's is https."""
    publish.lambda_handler({**_event("Delete"), "ResponseURL": url, "PhysicalResourceId": "p"}, None, s3=object())
    assert cfn.bodies[-1]["Status"] == "SUCCESS"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://cfn.example/resp", "ftp://127.0.0.1/x"])
def test_a_response_url_of_another_scheme_or_a_remote_http_host_is_never_opened(cfn, url):
    with pytest.raises(ValueError, match="ResponseURL must be https"):
        publish.lambda_handler({**_event("Delete"), "ResponseURL": url, "PhysicalResourceId": "p"}, None, s3=object())
    assert cfn.bodies == []


def test_the_layers_loupe_package_is_found_on_the_import_path(cfn, monkeypatch):
    """As in Lambda (/opt/python on sys.path), without LOUPE_PACKAGE_DIR: the package the function imports."""
    monkeypatch.delenv("LOUPE_PACKAGE_DIR")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="art")
        publish.lambda_handler(_event("Create"), None, s3=s3)
        obj = s3.get_object(Bucket="art", Key="code/training/sourcedir.tar.gz")["Body"].read()
    assert cfn.bodies[-1]["Status"] == "SUCCESS"
    with tarfile.open(fileobj=io.BytesIO(obj)) as tar:
        assert tar.extractfile("loupe/datasets.py").read() == (LOUPE / "datasets.py").read_bytes()
