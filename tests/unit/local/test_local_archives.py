"""The local tools that unpack a model package from S3 (the demo's model download, the console's labeling
assistant) refuse a member that would land outside their folder, with UnsafeKeyError, and write nothing there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support.hostile_keys import escaping_tar_gz, files_under

from loupe.safe_paths import UnsafeKeyError
from loupe_local.demo.stages import _download_model

BUCKET = "artifacts"
GOOD = {"model.onnx": b"m", "model_card.json": b"{}"}


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.mark.parametrize("bad", ["../../evil.txt", "/abs/evil.txt", "a/../../../evil.txt"])
def test_the_demo_refuses_a_model_package_with_an_escaping_member(s3, tmp_path: Path, bad: str) -> None:
    s3.put_object(Bucket=BUCKET, Key="pkg/model.tar.gz", Body=escaping_tar_gz(GOOD, bad))
    ctx = SimpleNamespace(out=tmp_path / "demo", client=lambda service: s3)
    with pytest.raises(UnsafeKeyError, match="escapes"):
        _download_model(ctx, f"s3://{BUCKET}/pkg/model.tar.gz", 1)
    assert files_under(tmp_path) == {"demo/models/v1/model.tar.gz"}


def test_the_demo_unpacks_a_plain_model_package(s3, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="pkg/model.tar.gz", Body=escaping_tar_gz(GOOD, "notes.txt"))
    ctx = SimpleNamespace(out=tmp_path / "demo", client=lambda service: s3)
    folder = _download_model(ctx, f"s3://{BUCKET}/pkg/model.tar.gz", 1)
    assert (folder / "model.onnx").read_bytes() == b"m"


class _Observer:
    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    def packages(self, with_cards: bool = True) -> list[dict[str, Any]]:
        model_data = f"s3://{BUCKET}/pkg/model.tar.gz"
        return [{"arn": "arn:pkg/1", "approval": "Approved", "model_data": model_data, "version": 1}]

    def client(self, service: str) -> Any:
        return self.s3
