"""Warm-start weights and champion lookup against S3 / the model registry (moto)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from support.archives import tar_gz
from support.hostile_keys import escaping_tar_gz, files_under, put_hostile_keys

from loupe.safe_paths import UnsafeKeyError
from loupe_training.entry import job_main
from loupe_training.jobs import WEIGHTS_MARKER, champion_weights, fetch_weights, find_champion, unpack_model_dir
from loupe_training.tiny import make_tiny_version
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


def _package(sm, status: str, url: str, weights: str, **metadata: str) -> str:
    return sm.create_model_package(
        ModelPackageGroupName="g",
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": url}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["a/b"],
        },
        CustomerMetadataProperties={"weights_uri": weights, **metadata},
    )["ModelPackageArn"]


def test_champion_is_the_latest_approved_package(aws, tmp_path):
    s3, sm = aws
    assert find_champion(sm, s3, "g", tmp_path / "c") is None
    assert champion_weights(sm, s3, "g") is None
    s3.put_object(Bucket="art", Key="pkg/1/model.tar.gz", Body=tar_gz({"model.onnx": b"champion"}))
    arn = _package(sm, "Approved", "s3://art/pkg/1/model.tar.gz", "s3://art/train/1/model.tar.gz")
    _package(sm, "PendingManualApproval", "s3://art/pkg/2/model.tar.gz", "s3://art/train/2/model.tar.gz")
    champ = find_champion(sm, s3, "g", tmp_path / "c")
    assert champ["arn"] == arn and champ["model"].read_bytes() == b"champion"
    weights = champion_weights(sm, s3, "g")
    assert weights is not None and (weights.arn, weights.uri) == (arn, "s3://art/train/1/model.tar.gz")
    assert weights.sha256 == "" and "no model_card_sha256" in weights.reason


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


# --- warm start from the champion: its weights are a pickle, loaded only with the digest its model card gives ---

WEIGHTS = b"champion weights (a pickle)"
TRAINED = "s3://art/pipeline/training/job-1/output/model.tar.gz"


def _register_champion(s3, sm, card_weights: dict | None, card_digest_in_metadata: bool = True) -> str:
    """A champion as the pipeline registers it: training artifact (best.pt), package with its card, metadata."""
    s3.put_object(
        Bucket="art", Key=TRAINED.removeprefix("s3://art/"), Body=tar_gz({"best.pt": WEIGHTS, "model.onnx": b"o"})
    )
    card = json.dumps({"format": "loupe-model-card/1", **({"weights": card_weights} if card_weights else {})})
    s3.put_object(
        Bucket="art", Key="pkg/1/model.tar.gz", Body=tar_gz({"model.onnx": b"o", "model_card.json": card.encode()})
    )
    metadata = {"model_card_sha256": hashlib.sha256(card.encode()).hexdigest()} if card_digest_in_metadata else {}
    return _package(sm, "Approved", "s3://art/pkg/1/model.tar.gz", TRAINED, **metadata)


def _digest_entry() -> dict:
    return {"uri": TRAINED, "file": "best.pt", "sha256": hashlib.sha256(WEIGHTS).hexdigest()}


def _prepare(tiny_dir: Path, out: Path, capsys) -> tuple[int, str]:
    rc = job_main(
        [
            "prepare",
            "--dataset", str(tiny_dir),
            "--out", str(out / "dataset"),
            "--weights-out", str(out / "weights"),
            "--model-package-group", "g",
        ]
    )  # fmt: skip
    return rc, capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    make_tiny_version(folder, count=24, size=64, seed=5)
    return folder


@pytest.fixture
def region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_the_champion_weights_are_verified_against_its_model_card(aws, region, tiny_dir, tmp_path, capsys):
    s3, sm = aws
    arn = _register_champion(s3, sm, _digest_entry())
    champ = champion_weights(sm, s3, "g")
    assert champ is not None and (champ.arn, champ.uri, champ.sha256) == (arn, TRAINED, _digest_entry()["sha256"])
    rc, out = _prepare(tiny_dir, tmp_path, capsys)
    assert rc == 0, out
    assert (tmp_path / "weights" / "weights.pt").read_bytes() == WEIGHTS
    assert "verified against the model card" in out


def test_weights_changed_after_registration_fail_the_job_and_are_not_staged(aws, region, tiny_dir, tmp_path, capsys):
    s3, sm = aws
    _register_champion(s3, sm, _digest_entry())
    planted = tar_gz({"best.pt": b"a pickle that runs code when loaded", "model.onnx": b"o"})
    s3.put_object(Bucket="art", Key=TRAINED.removeprefix("s3://art/"), Body=planted)
    rc, out = _prepare(tiny_dir, tmp_path, capsys)
    assert rc == 1
    assert "error: warm-start weights best.pt" in out and "refusing to load them" in out
    assert not (tmp_path / "weights" / "weights.pt").exists()


def test_a_model_card_changed_after_registration_fails_the_job(aws, region, tiny_dir, tmp_path, capsys):
    s3, sm = aws
    _register_champion(s3, sm, _digest_entry())
    forged = json.dumps({"weights": {"uri": TRAINED, "sha256": hashlib.sha256(b"planted").hexdigest()}}).encode()
    s3.put_object(Bucket="art", Key="pkg/1/model.tar.gz", Body=tar_gz({"model.onnx": b"o", "model_card.json": forged}))
    rc, out = _prepare(tiny_dir, tmp_path, capsys)
    assert rc == 1 and "does not match the package's model_card_sha256" in out
    assert not (tmp_path / "weights" / "weights.pt").exists()


@pytest.mark.parametrize(
    ("card_weights", "in_metadata", "reason"),
    [
        (None, True, "its model card has no weights digest"),
        ({"uri": TRAINED, "file": "best.pt"}, True, "its model card has no weights digest"),
        (_digest_entry(), False, "its package metadata has no model_card_sha256"),
    ],
)
def test_a_champion_without_a_trusted_digest_is_not_a_starting_point(
    aws, region, tiny_dir, tmp_path, capsys, card_weights, in_metadata, reason
):
    s3, sm = aws
    arn = _register_champion(s3, sm, card_weights, card_digest_in_metadata=in_metadata)
    rc, out = _prepare(tiny_dir, tmp_path, capsys)
    assert rc == 0, out
    assert f"warm start refused: champion {arn}: {reason}" in out and "; training from scratch" in out
    assert (tmp_path / "weights" / WEIGHTS_MARKER).is_file()
    assert not (tmp_path / "weights" / "weights.pt").exists()
