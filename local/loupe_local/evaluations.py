"""A model package's evaluation as the console's Models page shows it, read from the evaluation step's output.

The training pipeline registers each package with ``ModelMetrics.ModelQuality.Statistics.S3Uri`` pointing at
``<evaluation folder>/evaluation.json``; the evaluation step writes ``details.json`` and ``samples/`` in the same
folder (``evaluation_uri`` in the package's metadata names it too). ``details.json`` holds the FP32 scores with
their bootstrap spread, the champion's scores on the same test images, the paired comparison with the gate's bar,
and sample test frames with ground-truth, predicted and champion-predicted boxes (original image pixels).

Everything is read leniently: a package evaluated before a field existed (no spread, no comparison, no samples)
gets ``None`` for it, which the page shows as "not measured"; a malformed value is dropped, never raised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from loupe import aws_errors

DETAILS = "details.json"
STATISTICS = "evaluation.json"
# a sample image, relative to the evaluation folder: one file name under samples/ (the console API presigns those)
SAMPLE = re.compile(r"^samples/[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def folder(desc: dict[str, Any]) -> str | None:
    """``s3://bucket/prefix`` of a described package's evaluation output (no trailing slash), or None."""
    stats = ((desc.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
    uri = str(stats.get("S3Uri") or "")
    if uri.startswith("s3://") and "/" in uri.removeprefix("s3://"):
        return uri.rsplit("/", 1)[0]
    meta = desc.get("CustomerMetadataProperties") or {}
    uri = str(meta.get("evaluation_uri") or "")
    return uri.rstrip("/") if uri.startswith("s3://") and len(uri) > 5 else None


def split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _interval(value: Any) -> list[float] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = _num(value[0]), _num(value[1])
        if low is not None and high is not None:
            return [low, high]
    return None


def _box(value: Any) -> list[float] | None:
    if isinstance(value, list | tuple) and len(value) == 4:
        numbers = [_num(v) for v in value]
        if all(n is not None for n in numbers):
            return [float(n) for n in numbers if n is not None]
    return None


def _predictions(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        box = _box(item.get("box")) if isinstance(item, dict) else None
        if box is not None:
            out.append({"box": box, "conf": _num(item.get("conf"))})
    return out


def _spread(scores: dict[str, Any]) -> dict[str, Any] | None:
    spread = scores.get("spread")
    if not isinstance(spread, dict) or not isinstance(spread.get("map50"), dict):
        return None
    m = spread["map50"]
    ci90 = _interval(m.get("ci90"))
    if ci90 is None:
        return None
    return {
        "mean": _num(m.get("mean")),
        "std": _num(m.get("std")),
        "ci90": ci90,
        "bootstrap": spread.get("bootstrap"),
        "images": spread.get("images"),
    }


def _scores(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {k: _num(value.get(k)) for k in ("map50", "map50_95", "precision", "recall")}
    out["images"] = value.get("images")
    out["spread"] = _spread(value)
    if "kept" in value:
        out["kept"] = bool(value.get("kept"))
        out["reason"] = str(value.get("reason") or "")
    return out


def _champion(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not value.get("present"):
        return {"present": False}
    arn = str(value.get("arn") or "")
    return {
        "present": True,
        "arn": arn,
        "version": arn.rsplit("/", 1)[-1] if arn else None,
        "map50": _num(value.get("map50")),
        "map50_95": _num(value.get("map50_95")),
    }


def _comparison(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    out = {
        "difference": _num(value.get("difference")),
        "ci90": _interval(value.get("ci90")),
        "p_challenger_better": _num(value.get("p_challenger_better")),
        "champion_bar": _num(value.get("champion_bar")),
        "margin": _num(value.get("margin")),
    }
    return out if any(v is not None for v in out.values()) else None


def _sample(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    image, width, height = str(value.get("image") or ""), _num(value.get("width")), _num(value.get("height"))
    if not SAMPLE.match(image) or not width or not height:
        return None
    truth = [b for b in (_box(v) for v in value.get("truth") or []) if b is not None]
    return {
        "image": image,
        "width": width,
        "height": height,
        "conf_threshold": _num(value.get("conf_threshold")),
        "truth": truth,
        "predictions": _predictions(value.get("predictions")) or [],
        "champion_predictions": _predictions(value.get("champion_predictions")),
    }


def summarize(details: Any) -> dict[str, Any]:
    """The page's view of a ``details.json`` document; fields it lacks (older evaluations) are None / empty."""
    if not isinstance(details, dict):
        return {"error": "details.json is not a JSON object"}
    samples = details.get("samples")
    return {
        "fp32": _scores(details.get("fp32")),
        "int8": _scores(details.get("int8")),
        "champion": _champion(details.get("champion")),
        "comparison": _comparison(details.get("comparison")),
        "samples": [s for s in (_sample(v) for v in samples) if s is not None] if isinstance(samples, list) else None,
    }


class EvaluationReader:
    """Reads packages' ``details.json`` and sample images from S3. An evaluation's output never changes once the
    package is registered: a summary read once is kept (a missing or unreadable one is asked again)."""

    def __init__(self, s3: Callable[[], Any]) -> None:
        self._s3 = s3
        self._summaries: dict[str, dict[str, Any]] = {}

    def summary(self, desc: dict[str, Any]) -> dict[str, Any]:
        """``{"folder", "measured": True, "fp32", "int8", "champion", "comparison", "samples"}``, or
        ``{"measured": False, "reason"}`` (no evaluation output, no details.json), or ``{"error"}``."""
        where = folder(desc)
        if where is None:
            return {"measured": False, "reason": "no evaluation output registered with the package (ModelMetrics)"}
        if where in self._summaries:
            return self._summaries[where]
        bucket, prefix = split(where)
        try:
            body = self._s3().get_object(Bucket=bucket, Key=f"{prefix}/{DETAILS}")["Body"].read()
        except ClientError as exc:
            if aws_errors.is_not_found(exc):
                return {"folder": where, "measured": False, "reason": f"no {DETAILS} in {where}"}
            return {"folder": where, "error": f"cannot read {where}/{DETAILS}: {aws_errors.error_message(exc)}"}
        try:
            doc = json.loads(body)
        except ValueError as exc:
            return {"folder": where, "error": f"{where}/{DETAILS} is not JSON: {exc}"}
        out = {"folder": where, "measured": True, **summarize(doc)}
        if "error" not in out:
            self._summaries[where] = out
        return out
