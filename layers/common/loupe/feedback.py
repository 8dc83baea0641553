"""Edge feedback: a device announces an uncertain frame it has uploaded; Loupe records it for labeling.

The device uploads the frame to ``raw/feedback/<thing>/`` (with its metadata) and publishes a message on
``loupe/<thing>/low-confidence``; the IoT topic rule hands the message to ``functions/feedback``. The message is
checked against its topic and the object it names; the frame is then recorded by the same ingest code an upload
goes through (content hash, so the S3 event of the same upload and this message give one ledger entry).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_MESSAGE_BYTES = 16 * 1024
THING = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")


class FeedbackRejected(ValueError):
    """The announcement is not acceptable; the reason says why (it goes to the rule's error queue)."""


class LowConfidenceMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    thing: str = Field(min_length=1, max_length=128)
    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    frame_id: str = Field(min_length=1, max_length=256)
    model_version: str = Field(default="", max_length=128)
    max_confidence: float = Field(ge=0.0, le=1.0)
    reason: str = Field(default="", max_length=256)
    timestamp: float | str | None = None
    topic: str | None = None  # added by the rule's SELECT (topic()) locally and in the cloud

    @field_validator("thing")
    @classmethod
    def _thing_name(cls, value: str) -> str:
        if not THING.match(value):
            raise ValueError(f"not a thing name: {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LowConfidenceMessage:
        prefix = f"raw/feedback/{self.thing}/"
        if not self.key.startswith(prefix) or ".." in self.key:
            raise ValueError(f"key {self.key!r} is not under {prefix}")
        if self.topic is not None and self.topic != f"loupe/{self.thing}/low-confidence":
            raise ValueError(f"message for {self.thing} arrived on {self.topic}")
        return self


def parse_message(event: Any, raw_bucket: str) -> LowConfidenceMessage:
    import json

    if not isinstance(event, dict):
        raise FeedbackRejected(f"expected a JSON object, got {type(event).__name__}")
    if len(json.dumps(event)) > MAX_MESSAGE_BYTES:
        raise FeedbackRejected(f"message over {MAX_MESSAGE_BYTES} bytes")
    try:
        message = LowConfidenceMessage.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
        raise FeedbackRejected(f"invalid low-confidence message: {problems}") from exc
    if message.bucket != raw_bucket:
        raise FeedbackRejected(f"bucket {message.bucket!r} is not Loupe's raw bucket")
    return message


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def handle(s3: Any, ledger: Any, event: Any, raw_bucket: str, announce: Any = None) -> dict[str, Any]:
    """Validate one announcement and record its frame; returns the ingest result."""
    from loupe.ingest import ObjectRef, ingest_object

    message = parse_message(event, raw_bucket)
    if not object_exists(s3, message.bucket, message.key):
        raise FeedbackRejected(f"s3://{message.bucket}/{message.key} does not exist (announced before upload?)")
    result = ingest_object(s3, ledger, ObjectRef(bucket=message.bucket, key=message.key), announce=announce)
    return {**result.as_dict(), "thing": message.thing, "model_version": message.model_version}
