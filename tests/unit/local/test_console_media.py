"""What the console shows of pixels: a package's evaluation details (lenient with older details.json files) and its
sample images; the raw-bucket image of a device's result, which exists only for the uncertain frames it uploaded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loupe_local.evaluations import EvaluationReader, folder, summarize

BUCKET = "artifacts"
RAW = "raw-bucket"
THING = "line-1"
# what the readers decide an image's type by: its first bytes (PNG and JPEG magic), whatever the key says
PNG_1 = b"\x89PNG\r\n\x1a\n-1"
JPG_2 = b"\xff\xd8\xff-2"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket=RAW)
        yield client


def described(uri: str | None = None, evaluation_uri: str | None = None) -> dict[str, Any]:
    desc: dict[str, Any] = {"CustomerMetadataProperties": {}}
    if uri:
        desc["ModelMetrics"] = {"ModelQuality": {"Statistics": {"S3Uri": uri, "ContentType": "application/json"}}}
    if evaluation_uri:
        desc["CustomerMetadataProperties"]["evaluation_uri"] = evaluation_uri
    return desc


def test_the_evaluation_folder_is_the_one_of_the_registered_statistics() -> None:
    assert (
        folder(described(f"s3://{BUCKET}/pipelines/x/Evaluate/evaluation.json"))
        == f"s3://{BUCKET}/pipelines/x/Evaluate"
    )
    assert folder(described(evaluation_uri=f"s3://{BUCKET}/eval/")) == f"s3://{BUCKET}/eval"
    assert folder(described()) is None


def test_new_details_are_summarized_for_the_page() -> None:
    details = {
        "fp32": {
            "map50": 0.71,
            "map50_95": 0.3,
            "images": 31,
            "spread": {"map50": {"mean": 0.7, "std": 0.05, "ci90": [0.62, 0.79]}, "bootstrap": 1000, "images": 31},
        },
        "champion": {"present": True, "arn": "arn:aws:sagemaker:us-east-1:1:model-package/g/3", "map50": 0.65},
        "comparison": {"difference": 0.06, "ci90": [-0.01, 0.13], "p_challenger_better": 0.93, "champion_bar": 0.67},
        "samples": [
            {
                "image": "samples/a.jpg",
                "width": 450,
                "height": 300,
                "conf_threshold": 0.25,
                "truth": [[1, 2, 30, 40], ["bad"]],
                "predictions": [{"box": [2, 3, 31, 41], "conf": 0.8}, {"box": None}],
                "champion_predictions": [],
            },
            {"image": "../escape.jpg", "width": 10, "height": 10},
            {"image": "samples/no-size.jpg"},
        ],
    }
    out = summarize(details)
    assert out["fp32"]["map50"] == 0.71
    assert out["fp32"]["spread"] == {"mean": 0.7, "std": 0.05, "ci90": [0.62, 0.79], "bootstrap": 1000, "images": 31}
    assert out["champion"] == {
        "present": True,
        "arn": "arn:aws:sagemaker:us-east-1:1:model-package/g/3",
        "version": "3",
        "map50": 0.65,
        "map50_95": None,
    }
    assert out["comparison"] == {
        "difference": 0.06,
        "ci90": [-0.01, 0.13],
        "p_challenger_better": 0.93,
        "champion_bar": 0.67,
        "margin": None,
    }
    (sample,) = out["samples"]  # the escaping and the size-less samples are dropped
    assert sample["truth"] == [[1.0, 2.0, 30.0, 40.0]]
    assert sample["predictions"] == [{"box": [2.0, 3.0, 31.0, 41.0], "conf": 0.8}]
    assert sample["champion_predictions"] == []


def test_older_details_leave_the_new_fields_unmeasured() -> None:
    out = summarize({"fp32": {"map50": 0.5, "map50_95": 0.2}, "int8": {"kept": False}, "champion": {"present": False}})
    assert out["fp32"]["map50"] == 0.5 and out["fp32"]["spread"] is None
    assert out["champion"] == {"present": False}
    assert out["comparison"] is None and out["samples"] is None
    assert summarize({"fp32": {"spread": {"map50": {"ci90": "wide"}}}})["fp32"]["spread"] is None
    assert summarize([1, 2]) == {"error": "details.json is not a JSON object"}


def test_the_reader_reads_the_details_next_to_the_statistics(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="eval/evaluation.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="eval/details.json", Body=json.dumps({"fp32": {"map50": 0.4}}).encode())
    s3.put_object(Bucket=BUCKET, Key="eval/samples/a.jpg", Body=b"\xff\xd8\xffjpeg")
    reader = EvaluationReader(lambda: s3)
    desc = described(f"s3://{BUCKET}/eval/evaluation.json")
    out = reader.summary(desc)
    assert out["measured"] is True and out["folder"] == f"s3://{BUCKET}/eval" and out["fp32"]["map50"] == 0.4

    missing = reader.summary(described(f"s3://{BUCKET}/other/evaluation.json"))
    assert missing["measured"] is False and "no details.json" in missing["reason"]
    assert reader.summary(described())["measured"] is False
    s3.put_object(Bucket=BUCKET, Key="broken/details.json", Body=b"{not json")
    assert "is not JSON" in reader.summary(described(f"s3://{BUCKET}/broken/evaluation.json"))["error"]


def message(topic: str, payload: Any) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, payload=json.dumps(payload).encode())
