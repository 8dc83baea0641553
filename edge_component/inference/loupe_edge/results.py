"""What leaves the device for a frame: its result message for MQTT (kept within IoT Core's message size) and, for an
uncertain frame, its feedback upload (the S3 key, metadata with the predicted boxes, and the announcement)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np

from loupe_edge import formats
from loupe_edge.config import Config
from loupe_edge.sources import RawFrame

RESULTS = "results"  # the outbox queue of result messages (→ MQTT)
UPLOADS = "uploads"  # the outbox queue of feedback frames (→ S3, then their announcement → MQTT)
MAX_MESSAGE_BYTES = 120 * 1024  # below AWS IoT Core's 128 KB limit, with room for MQTT framing
# S3 allows 2 KB of user metadata per object (keys and values): the boxes take at most this much of it, the most
# confident first (Amazon S3 User Guide, "Working with object metadata").
BOXES_METADATA_BYTES = 1500


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def boxes_metadata(boxes: list) -> str:
    """The frame's boxes as compact JSON for its S3 metadata, ``[[class_id, confidence, x1, y1, x2, y2], ...]``
    (the console's Fleet page draws them over the frame), as many as fit in :data:`BOXES_METADATA_BYTES`."""
    rows = [[b["class_id"], b["confidence"], *b["xyxy"]] for b in sorted(boxes, key=lambda b: -b["confidence"])]
    kept: list = []
    for row in rows:
        if len(json.dumps([*kept, row], separators=(",", ":"))) > BOXES_METADATA_BYTES:
            break
        kept.append(row)
    return json.dumps(kept, separators=(",", ":"))


def encode(message: dict) -> bytes:
    """The result message as compact JSON within :data:`MAX_MESSAGE_BYTES`: past it, the least confident boxes are
    dropped (the message says how many, ``boxes_truncated``)."""
    payload = json.dumps(message, separators=(",", ":")).encode()
    if len(payload) <= MAX_MESSAGE_BYTES:
        return payload
    boxes = message["boxes"]
    keep = len(boxes)
    while keep and len(payload) > MAX_MESSAGE_BYTES:
        keep = keep * 3 // 4
        trimmed = dict(message, boxes=boxes[:keep], boxes_truncated=len(boxes) - keep)
        payload = json.dumps(trimmed, separators=(",", ":")).encode()
    return payload


def feedback_entry(
    cfg: Config, thing: str, frame: RawFrame, rgb: np.ndarray, version: str, decision: Any, boxes: list | None = None
) -> tuple[str, dict, bytes]:
    """The outbox entry ``(queue, meta, body)`` of an uncertain frame: its own bytes when they are an image ingest
    accepts (else the decoded frame as JPEG), its key under ``feedback.prefix/<thing>/``, its S3 metadata (device,
    model version, confidence, reason, boxes) and the announcement published once it is in S3."""
    fb = cfg.get("feedback")
    body = frame.data
    ext = formats.sniff(body)
    if body is None or ext is None:  # a video frame (or, defensively, bytes ingest would refuse): encode
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
        body, ext = buf.getvalue(), "jpg"
    prefix = fb["prefix"].strip("/")
    key = f"{prefix}/{thing}/{frame.frame_id}.{ext}"
    announce = {
        "thing": thing,
        "bucket": fb["bucket"],
        "key": key,
        "frame_id": frame.frame_id,
        "model_version": version,
        "max_confidence": round(decision.max_confidence, 4),
        "reason": decision.reason,
        "timestamp": utc_now(),
    }
    meta = {
        "bucket": fb["bucket"],
        "key": key,
        "content_type": formats.CONTENT_TYPES[ext],
        "metadata": {
            "device": thing,
            "model-version": version,
            "max-confidence": f"{decision.max_confidence:.4f}",
            "reason": decision.reason,
            "boxes": boxes_metadata(boxes or []),
        },
        "topic": cfg.topic("lowConfidence"),
        "announce": announce,
    }
    return UPLOADS, meta, body
