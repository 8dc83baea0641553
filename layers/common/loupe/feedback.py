"""Edge feedback: a device announces an uncertain frame it has uploaded; Loupe records it for labeling.

The device uploads the frame to ``raw/feedback/<thing>/`` (with its metadata) and publishes a message on
``loupe/<thing>/low-confidence``; the IoT topic rule (``SELECT *, topic() AS topic, topic(2) AS source_thing``)
hands the message to ``functions/feedback``. The thing is the one of the topic (which the device policy ties to
the connection), never the payload's claim: a message whose claimed thing, key prefix or topic disagree with it is
rejected. The frame is then recorded by the same ingest code an upload goes through (content hash, so the S3 event
of the same upload and this message give one ledger entry).

A rejected device message is not an error to retry: ``record_rejection`` keeps it, with its reason, under
``quarantine/device-messages/`` in the raw bucket (where an operator looks) and the handler counts it in the
``RejectedDeviceMessages`` metric, then returns normally.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator, model_validator

from loupe import aws_errors
from loupe.aws_clients import S3
from loupe.finite import as_json_safe, finite_reason

if TYPE_CHECKING:
    from loupe.ingest import Announce
    from loupe.ledger import Ledger

MAX_MESSAGE_BYTES = 16 * 1024
THING = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")


class RulePayload(RootModel[Any]):
    """What an IoT topic rule hands its function: the device's message plus the rule's ``topic`` and
    ``source_thing``. Taken as given: checking it (:class:`LowConfidenceMessage`, ``loupe.edge_metrics.Health``)
    is the domain's, which keeps a bad message as a rejection instead of raising."""


class FeedbackRejected(ValueError):
    """The announcement is not acceptable; the reason says why (it goes to the rule's error queue)."""


class LowConfidenceMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    thing: str = Field(min_length=1, max_length=128)
    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    frame_id: str = Field(min_length=1, max_length=256)
    model_version: str = Field(default="", max_length=128)
    max_confidence: float = Field(ge=0.0, le=1.0)
    reason: str = Field(default="", max_length=256)
    timestamp: float | str | None = None
    # added by the rule's SELECT from the MQTT topic (the rule's values replace any the payload carries)
    topic: str = Field(min_length=1, max_length=256)
    source_thing: str = Field(min_length=1, max_length=128)

    @field_validator("thing")
    @classmethod
    def _thing_name(cls, value: str) -> str:
        if not THING.match(value):
            raise ValueError(f"not a thing name: {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LowConfidenceMessage:
        source = self.source_thing  # the thing of the topic, i.e. of the connection that published
        if self.topic != f"loupe/{source}/low-confidence":
            raise ValueError(f"message from {source} arrived on {self.topic}")
        if self.thing != source:
            raise ValueError(f"{source} published a message claiming to be {self.thing}")
        prefix = f"raw/feedback/{source}/"
        if not self.key.startswith(prefix) or ".." in self.key:
            raise ValueError(f"key {self.key!r} is not under {prefix}")
        return self


def parse_message(event: Any, raw_bucket: str) -> LowConfidenceMessage:
    import json

    if not isinstance(event, dict):
        raise FeedbackRejected(f"expected a JSON object, got {type(event).__name__}")
    if len(json.dumps(event)) > MAX_MESSAGE_BYTES:
        raise FeedbackRejected(f"message over {MAX_MESSAGE_BYTES} bytes")
    problem = finite_reason(event)
    if problem is not None:
        raise FeedbackRejected(f"invalid low-confidence message: {problem}")
    try:
        message = LowConfidenceMessage.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
        raise FeedbackRejected(f"invalid low-confidence message: {problems}") from exc
    if message.bucket != raw_bucket:
        raise FeedbackRejected(f"bucket {message.bucket!r} is not Loupe's raw bucket")
    return message


REJECTIONS_PREFIX = "quarantine/device-messages"


def record_rejection(s3: S3, bucket: str, kind: str, event: Any, reason: str) -> str:
    """Keep a rejected device message with its reason; returns the record's key. The thing in the key is the
    topic's (``source_thing``), never the payload's claim."""
    import json
    import uuid
    from datetime import UTC, datetime

    source = event.get("source_thing") if isinstance(event, dict) else None
    thing = source if isinstance(source, str) and THING.match(source) else "unknown"
    now = datetime.now(UTC)
    key = f"{REJECTIONS_PREFIX}/{kind}/{thing}/{now:%Y/%m/%d}/{now:%H%M%S}-{uuid.uuid4().hex[:12]}.json"
    record: dict[str, Any] = {"kind": kind, "thing": thing, "reason": reason, "received": now.isoformat()}
    event = as_json_safe(event)  # a message refused for its NaN is still kept as standard JSON
    text = json.dumps(event, default=str)
    if len(text) <= MAX_MESSAGE_BYTES:
        record["message"] = event
    else:  # an oversized message is kept in part, as text
        record["message_truncated"] = text[:MAX_MESSAGE_BYTES]
    body = json.dumps(record, default=str, allow_nan=False).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return key


def object_exists(s3: S3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except Exception as exc:
        if aws_errors.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def handle(s3: S3, ledger: Ledger, event: Any, raw_bucket: str, announce: Announce | None = None) -> dict[str, Any]:
    """Validate one announcement and record its frame; returns the ingest result, or ``{"rejected": reason,
    "record": key}`` for a message refused (and kept) - not an error: retrying it would give the same answer.
    Anything else (S3 or DynamoDB failing) raises, for Lambda's asynchronous retries."""
    from loupe.ingest import ObjectRef, ingest_object

    try:
        message = parse_message(event, raw_bucket)
        if not object_exists(s3, message.bucket, message.key):
            raise FeedbackRejected(f"s3://{message.bucket}/{message.key} does not exist (announced before upload?)")
    except FeedbackRejected as exc:
        return {"rejected": str(exc), "record": record_rejection(s3, raw_bucket, "feedback", event, str(exc))}
    result = ingest_object(s3, ledger, ObjectRef(bucket=message.bucket, key=message.key), announce=announce)
    return {**result.as_dict(), "thing": message.thing, "model_version": message.model_version}
