"""Ground Truth manifests and Feature Store records: the converters, shared by the cloud and the local stand-in.

Input manifest (one JSON object a line): ``{"source-ref": "s3://...", "loupe-sha256": "<hex>"}`` - Ground Truth
passes extra attributes through to the output, so the content hash travels with each object.

Bounding-box output manifest line (as Ground Truth writes it)::

    {"source-ref": "s3://bucket/raw/a.jpg", "loupe-sha256": "...",
     "<attr>": {"image_size": [{"width": 450, "height": 300, "depth": 3}],
                "annotations": [{"class_id": 0, "left": 81, "top": 123, "width": 82, "height": 97}]},
     "<attr>-metadata": {"objects": [{"confidence": 0.93}], "class-map": {"0": "scratch"},
                         "type": "groundtruth/object-detection", "human-annotated": "yes",
                         "creation-date": "2026-11-21T23:00:00.000000", "job-name": "labeling-job/<name>"}}

An object the workforce could not label carries only ``<attr>-metadata`` with a ``failure-reason``.
Bounding-box verification output: ``"<attr>": <class index>`` and ``<attr>-metadata`` with ``class-name``,
``confidence``, ``type: groundtruth/label-verification``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loupe.datasets import Box, DatasetError

OBJECT_DETECTION = "groundtruth/object-detection"
LABEL_VERIFICATION = "groundtruth/label-verification"
SHA_ATTRIBUTE = "loupe-sha256"
VERIFICATION_CORRECT = "Label correct"
# the labeling app's verification line: a verifier's own words for a reject, in the metadata (Ground Truth's lines
# have none)
VERIFICATION_REASON = "loupe-reason"


class ManifestError(ValueError):
    """A manifest line that cannot be used, with its line number and reason."""


def gt_timestamp(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ManifestError(f"not an s3:// object URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ManifestError(f"not an s3:// object URI: {uri!r}")
    return bucket, key


# --- input ----------------------------------------------------------------------------------------------------


def input_line(source_ref: str, sha256: str, **extra: Any) -> str:
    split_s3_uri(source_ref)
    return json.dumps({"source-ref": source_ref, SHA_ATTRIBUTE: sha256, **extra}, separators=(",", ":"))


def read_lines(text: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-empty JSON line; raises ManifestError naming a bad line."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"line {number}: not JSON: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("source-ref"), str):
            raise ManifestError(f"line {number}: no source-ref")
        out.append((number, obj))
    return out


def category_config(class_map: dict[str, str]) -> dict[str, Any]:
    """The label category configuration file of a bounding-box job (class id = position)."""
    ordered = [class_map[str(i)] for i in range(len(class_map))]
    return {"document-version": "2018-11-28", "labels": [{"label": name} for name in ordered]}


def class_map_from_config(config: dict[str, Any]) -> dict[str, str]:
    labels = config.get("labels") or []
    if not labels:
        raise ManifestError("label category configuration has no labels")
    return {str(i): str(item["label"]) for i, item in enumerate(labels)}


# --- bounding-box output --------------------------------------------------------------------------------------


@dataclass
class OutputLabel:
    """One object of a bounding-box job's output: labels, or the reason it has none."""

    source_ref: str
    sha256: str | None
    width: int = 0
    height: int = 0
    depth: int = 3
    boxes: list[Box] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    class_map: dict[str, str] = field(default_factory=dict)
    job_name: str = ""
    human_annotated: bool = True
    creation_date: str = ""
    failure_reason: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.failure_reason)

    def annotations(self) -> list[dict[str, Any]]:
        return [
            {"class_id": b.class_id, "left": b.left, "top": b.top, "width": b.width, "height": b.height}
            for b in self.boxes
        ]


def output_line(
    source_ref: str,
    attribute: str,
    boxes: Iterable[Box],
    width: int,
    height: int,
    depth: int,
    class_map: dict[str, str],
    job_name: str,
    confidences: Iterable[float] | None = None,
    extra: dict[str, Any] | None = None,
    created: datetime | None = None,
) -> dict[str, Any]:
    boxes = list(boxes)
    conf = list(confidences) if confidences is not None else [0.99] * len(boxes)
    return {
        "source-ref": source_ref,
        **(extra or {}),
        attribute: {
            "image_size": [{"width": int(width), "height": int(height), "depth": int(depth)}],
            "annotations": [
                {
                    "class_id": b.class_id,
                    "left": _num(b.left),
                    "top": _num(b.top),
                    "width": _num(b.width),
                    "height": _num(b.height),
                }
                for b in boxes
            ],
        },
        f"{attribute}-metadata": {
            "objects": [{"confidence": round(float(c), 2)} for c in conf],
            "class-map": dict(class_map),
            "type": OBJECT_DETECTION,
            "human-annotated": "yes",
            "creation-date": gt_timestamp(created),
            "job-name": f"labeling-job/{job_name}",
        },
    }


def failed_line(
    source_ref: str, attribute: str, reason: str, job_name: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "source-ref": source_ref,
        **(extra or {}),
        f"{attribute}-metadata": {
            "failure-reason": reason,
            "human-annotated": "yes",
            "creation-date": gt_timestamp(),
            "job-name": f"labeling-job/{job_name}",
        },
    }


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 2)


def parse_output_line(obj: dict[str, Any], attribute: str) -> OutputLabel:
    """One output manifest object of a bounding-box job -> OutputLabel (validated against its image size)."""
    source_ref = obj.get("source-ref")
    if not isinstance(source_ref, str):
        raise ManifestError("no source-ref")
    sha = obj.get(SHA_ATTRIBUTE)
    meta = obj.get(f"{attribute}-metadata")
    if not isinstance(meta, dict):
        raise ManifestError(f"{source_ref}: no {attribute}-metadata (wrong label attribute name?)")
    job_name = str(meta.get("job-name", "")).removeprefix("labeling-job/")
    if meta.get("failure-reason"):
        return OutputLabel(source_ref, sha, job_name=job_name, failure_reason=str(meta["failure-reason"]))
    label = obj.get(attribute)
    if not isinstance(label, dict):
        raise ManifestError(f"{source_ref}: no {attribute} label and no failure-reason")
    if meta.get("type") not in (None, OBJECT_DETECTION):
        raise ManifestError(f"{source_ref}: {attribute} is a {meta.get('type')} label, not object detection")
    sizes = label.get("image_size") or []
    if not sizes or not isinstance(sizes[0], dict):
        raise ManifestError(f"{source_ref}: no image_size")
    try:
        width, height = int(sizes[0]["width"]), int(sizes[0]["height"])
        depth = int(sizes[0].get("depth", 3))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: Infinity
        raise ManifestError(f"{source_ref}: bad image_size {sizes[0]!r}") from exc
    class_map = {str(k): str(v) for k, v in (meta.get("class-map") or {}).items()}
    n_classes = max((int(k) for k in class_map), default=-1) + 1
    boxes = []
    try:
        for raw in label.get("annotations") or []:
            box = Box.from_dict(raw)
            # without a class-map any non-negative class id is taken as is
            box.validate(width, height, n_classes if class_map else max(box.class_id + 1, 1))
            boxes.append(box)
    except DatasetError as exc:
        raise ManifestError(f"{source_ref}: {exc}") from exc
    try:
        confidences = [float(o.get("confidence", 0.0)) for o in meta.get("objects") or []]
    except (AttributeError, TypeError, ValueError) as exc:
        raise ManifestError(f"{source_ref}: bad objects confidence: {exc}") from exc
    if not all(math.isfinite(c) for c in confidences):
        raise ManifestError(f"{source_ref}: objects confidence must be finite numbers (NaN and Infinity are refused)")
    return OutputLabel(
        source_ref=source_ref,
        sha256=sha,
        width=width,
        height=height,
        depth=depth,
        boxes=boxes,
        confidences=confidences,
        class_map=class_map,
        job_name=job_name,
        human_annotated=str(meta.get("human-annotated", "yes")).lower() == "yes",
        creation_date=str(meta.get("creation-date", "")),
    )


def parse_output_manifest(text: str, attribute: str) -> tuple[list[OutputLabel], list[str]]:
    """All objects of an output manifest; lines that cannot be used come back as reasons, never dropped silently."""
    labels, problems = [], []
    for number, obj in read_lines(text):
        try:
            labels.append(parse_output_line(obj, attribute))
        except ManifestError as exc:
            problems.append(f"line {number}: {exc}")
            labels.append(OutputLabel(obj["source-ref"], obj.get(SHA_ATTRIBUTE), failure_reason=str(exc)))
    return labels, problems


# --- verification ---------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    source_ref: str
    sha256: str | None
    category: str
    accepted: bool
    failure_reason: str = ""
    comment: str = ""


def verification_line(
    source_ref: str,
    attribute: str,
    categories: list[str],
    category: str,
    job_name: str,
    base: dict[str, Any] | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    return {
        **(base or {}),
        "source-ref": source_ref,
        attribute: categories.index(category),
        f"{attribute}-metadata": {
            "class-name": category,
            "confidence": confidence,
            "type": LABEL_VERIFICATION,
            "human-annotated": "yes",
            "creation-date": gt_timestamp(),
            "job-name": f"labeling-job/{job_name}",
        },
    }


def parse_verification_line(obj: dict[str, Any], attribute: str) -> Verdict:
    source_ref = obj["source-ref"]
    meta = obj.get(f"{attribute}-metadata")
    if not isinstance(meta, dict):
        raise ManifestError(f"{source_ref}: no {attribute}-metadata")
    if meta.get("failure-reason"):
        return Verdict(source_ref, obj.get(SHA_ATTRIBUTE), "", False, str(meta["failure-reason"]))
    category = str(meta.get("class-name", ""))
    if not category:
        raise ManifestError(f"{source_ref}: verification without class-name")
    comment = str(meta.get(VERIFICATION_REASON) or "")
    return Verdict(source_ref, obj.get(SHA_ATTRIBUTE), category, category == VERIFICATION_CORRECT, comment=comment)
