"""``loupe.console_api.evaluation.samples``: only ``samples/<file>.jpg|png`` of the package's evaluation folder in the
stack's artifact bucket is presigned (typed as the image it names); anything else in details.json is dropped."""

from __future__ import annotations

import io
import json
from typing import Any

from loupe.console_api import evaluation

FOLDER = "s3://artifacts/loupe-training/e1/Evaluate/output/evaluation"


class FakeS3:
    def __init__(self, details: Any) -> None:
        self.details = details
        self.presigned: list[dict[str, Any]] = []

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs == {"Bucket": "artifacts", "Key": "loupe-training/e1/Evaluate/output/evaluation/details.json"}
        return {"Body": io.BytesIO(json.dumps(self.details).encode())}

    def generate_presigned_url(self, ClientMethod: str, Params: dict[str, Any], ExpiresIn: int) -> str:  # noqa: N803
        self.presigned.append({"method": ClientMethod, **Params, "expires": ExpiresIn})
        return f"https://signed.example/{Params['Key']}"


def _desc(uri: str = FOLDER) -> dict[str, Any]:
    return {"ModelMetrics": {"ModelQuality": {"Statistics": {"S3Uri": f"{uri}/evaluation.json"}}}}


def test_only_sample_images_are_presigned_and_typed_by_their_name() -> None:
    good = {"image": "samples/a.png", "width": 40, "height": 30, "truth": [[1, 2, 3, 4], [1, "x", 3, 4]]}
    s3 = FakeS3(
        {
            "samples": [
                {**good, "predictions": [{"box": [1, 2, 3, 4], "conf": 0.5}, {"box": [1, 2]}]},
                {**good, "image": "samples/../../raw/x.jpg"},
                {**good, "image": "../raw/x.jpg"},
                {**good, "image": "samples/page.html"},
                {**good, "image": "samples/b.jpg", "width": 0},
                "not a sample",
            ]
        }
    )
    out = evaluation.samples(s3, _desc(), "artifacts")
    assert out["measured"] is True and [s["image"] for s in out["samples"]] == ["samples/a.png"]
    (sample,) = out["samples"]
    assert sample["truth"] == [[1.0, 2.0, 3.0, 4.0]] and sample["predictions"] == [
        {"box": [1.0, 2.0, 3.0, 4.0], "conf": 0.5}
    ]
    assert s3.presigned == [
        {
            "method": "get_object",
            "Bucket": "artifacts",
            "Key": "loupe-training/e1/Evaluate/output/evaluation/samples/a.png",
            "ResponseContentType": "image/png",
            "expires": evaluation.URL_SECONDS,
        }
    ]


def test_another_bucket_or_no_evaluation_is_not_read() -> None:
    s3 = FakeS3({})
    assert evaluation.samples(s3, _desc("s3://someone-else/x"), "artifacts")["measured"] is False
    assert evaluation.samples(s3, {}, "artifacts") == {
        "measured": False,
        "reason": "no evaluation output is registered with this package",
        "samples": [],
    }
    assert s3.presigned == []
