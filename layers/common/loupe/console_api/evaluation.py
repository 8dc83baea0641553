"""A model package's evaluation samples for the Models page: the test frames the evaluation step kept, with their
ground-truth, predicted and champion-predicted boxes, each image reachable by a short-lived presigned GET.

The training pipeline registers a package with ``ModelMetrics.ModelQuality.Statistics.S3Uri`` =
``<evaluation folder>/evaluation.json`` (``evaluation_uri`` in its metadata names the folder too); the evaluation step
writes ``details.json`` and ``samples/<file>`` there. Only that folder of the stack's artifact bucket is read, and
only ``samples/<file name>.jpg|.png`` is ever presigned, with the response typed as the image it names (S3's
``response-content-type`` override on a presigned GET): a sample path cannot point the browser at any other object.
Everything else is read leniently: a malformed box or sample is dropped, never raised.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from botocore.exceptions import ClientError

from loupe import aws_errors

DETAILS = "details.json"
SAMPLE = re.compile(r"^samples/[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(jpg|jpeg|png)$", re.IGNORECASE)
IMAGE_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}
MAX_SAMPLES = 12
MAX_BOXES = 100
URL_SECONDS = 300


class S3Reader(Protocol):
    def get_object(self, **kwargs: Any) -> dict[str, Any]: ...

    def generate_presigned_url(self, ClientMethod: str, Params: dict[str, Any], ExpiresIn: int) -> str: ...  # noqa: N803 - boto3's names


def folder(desc: dict[str, Any]) -> str | None:
    """``s3://bucket/prefix`` of a described package's evaluation output (no trailing slash), or None."""
    stats = ((desc.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
    uri = str(stats.get("S3Uri") or "")
    if uri.startswith("s3://") and "/" in uri.removeprefix("s3://"):
        return uri.rsplit("/", 1)[0]
    uri = str((desc.get("CustomerMetadataProperties") or {}).get("evaluation_uri") or "")
    return uri.rstrip("/") if uri.startswith("s3://") and len(uri) > 5 else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def _box(value: Any) -> list[float] | None:
    if isinstance(value, list) and len(value) == 4:
        numbers = [_num(v) for v in value]
        if all(n is not None for n in numbers):
            return [n for n in numbers if n is not None]
    return None


def _boxes(value: Any) -> list[list[float]]:
    return [b for b in (_box(v) for v in (value if isinstance(value, list) else [])[:MAX_BOXES]) if b is not None]


def _predictions(value: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in (value if isinstance(value, list) else [])[:MAX_BOXES]:
        box = _box(item.get("box")) if isinstance(item, dict) else None
        if box is not None:
            out.append({"box": box, "conf": _num(item.get("conf"))})
    return out


def samples(s3: S3Reader, desc: dict[str, Any], bucket: str, seconds: int = URL_SECONDS) -> dict[str, Any]:
    """``{"measured": True, "samples": [{"image_url", "width", "height", "truth", "predictions",
    "champion_predictions"?}]}``, or ``{"measured": False, "reason"}`` when the package has no readable evaluation
    output in ``bucket`` (the stack's artifact bucket)."""
    where = folder(desc)
    if where is None:
        return {"measured": False, "reason": "no evaluation output is registered with this package", "samples": []}
    found_bucket, _, prefix = where.removeprefix("s3://").partition("/")
    if found_bucket != bucket or not prefix:
        return {"measured": False, "reason": f"{where} is not in the stack's artifact bucket", "samples": []}
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{DETAILS}")["Body"].read()
        doc = json.loads(body)
    except ClientError as exc:
        reason = f"no {DETAILS} in {where}" if aws_errors.is_not_found(exc) else aws_errors.error_code(exc)
        return {"measured": False, "reason": reason, "samples": []}
    except ValueError:
        return {"measured": False, "reason": f"{where}/{DETAILS} is not JSON", "samples": []}
    out: list[dict[str, Any]] = []
    for entry in (doc.get("samples") if isinstance(doc, dict) else None) or []:
        if len(out) >= MAX_SAMPLES:
            break
        image = entry.get("image") if isinstance(entry, dict) else None
        width, height = _num(entry.get("width")) if image else None, _num(entry.get("height")) if image else None
        if not isinstance(image, str) or not SAMPLE.match(image) or not width or not height:
            continue
        kind = IMAGE_TYPES[image.rsplit(".", 1)[-1].lower()]
        params = {"Bucket": bucket, "Key": f"{prefix}/{image}", "ResponseContentType": kind}
        sample: dict[str, Any] = {
            "image": image,
            "image_url": s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds),
            "width": int(width),
            "height": int(height),
            "truth": _boxes(entry.get("truth")),
            "predictions": _predictions(entry.get("predictions")),
        }
        if "champion_predictions" in entry:
            sample["champion_predictions"] = _predictions(entry.get("champion_predictions"))
        out.append(sample)
    return {"measured": True, "samples": out}
