"""Ingest: decide whether bytes dropped under ``raw/`` are a usable image, and record the outcome in the ledger.

Validation is by content, never by name. Memory is bounded before it is spent: the object's size is checked from
GetObject's ``ContentLength`` *before* its body is read (and the read is capped at the limit), then magic bytes,
then the header dimensions against the pixel limit *before* any decoding (a small file that decodes to tens of
megapixels is refused from its header: "too many pixels"), then a full decode. ``MAX_PIXELS`` keeps the worst
accepted case (a CMYK, EXIF-rotated JPEG: decode, transpose, conversion) near 280 MB of the ingest function's
512 MB (``benchmarks/ingest_memory.py``). EXIF
orientation, CMYK and 16-bit samples are normalised into an upright 8-bit rendition that labeling and training
use; the ledger key stays the SHA-256 of the uploaded bytes, so the same upload is always the same entry.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from loupe import aws_errors
from loupe.aws_clients import S3, EventBridge
from loupe.datasets import DatasetError, sha256_bytes, valid_capture
from loupe.imaging import MAX_SIDE, ImageRejected, Limits, inspect_image

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    from loupe.ledger import Ledger

Announce = Callable[[str, dict[str, Any]], None]
"""``announce(sha256, origin)``: tells the rest of Loupe that an image was recorded (see :func:`announcer`)."""
# GetObject answers for a key or version that is not there (or not readable as one): try the next candidate key
_ABSENT_CODES = ("NoSuchVersion", "NoSuchKey", "404", "InvalidArgument", "MethodNotAllowed")

# CopyObject copies objects up to 5 GB in one call; a larger one stays where it is (recorded, not copied)
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html
MAX_COPY_BYTES = 5 * 1024**3

DEFAULT_LIMITS = Limits()
QUARANTINE_PREFIX = "quarantine/"
NORMALIZED_PREFIX = "normalized/"

# --- S3 side --------------------------------------------------------------------------------------------------


@dataclass
class ObjectRef:
    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def key_candidates(key: str) -> list[str]:
    """The key as S3 notifications give it is URL-encoded (``+`` for space); try decoded first, then as is."""
    decoded = unquote_plus(key)
    return [decoded, key] if decoded != key else [key]


FEEDBACK_PREFIX = "raw/feedback/"
_THING = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
_FEEDBACK_KINDS = ("edge_feedback", "feedback")


class OriginMismatch(ImageRejected):
    """The object's metadata claims an origin its key contradicts; ``origin`` is the one the key proves."""

    def __init__(self, reason: str, origin: dict[str, Any]) -> None:
        super().__init__(reason, "origin-mismatch")
        self.origin = origin


def origin_from_metadata(key: str, metadata: dict[str, str]) -> dict[str, Any]:
    """Origin of an object: its key decides who wrote it, its user metadata (``x-amz-meta-loupe-*``) only adds detail.

    Only a device's credentials write under ``raw/feedback/<thing>/`` (the token exchange role's policy scopes
    PutObject to ``raw/feedback/${credentials-iot:ThingName}/*``), so the thing of such a key is proven and the
    metadata's ``device`` is a claim. Metadata that contradicts the key (another device, a feedback origin for an
    object outside ``raw/feedback/``, another origin for one inside it) raises :class:`OriginMismatch`: the object
    is rejected with that reason, never recorded as the claimed device's."""
    meta = {k.lower().removeprefix("loupe-"): v for k, v in (metadata or {}).items()}
    claimed_kind, claimed_device = meta.get("origin"), meta.get("device")
    if not key.startswith(FEEDBACK_PREFIX):
        if claimed_kind in _FEEDBACK_KINDS or claimed_device is not None:
            raise OriginMismatch(
                f"metadata claims edge feedback from device {str(claimed_device or '')[:128]!r} but the object is "
                f"not under {FEEDBACK_PREFIX}<thing>/ (where only a device's credentials write)",
                {"kind": "upload"},
            )
        kept: dict[str, Any] = {"kind": claimed_kind or "upload"}
        return {**kept, **_capture(meta, kept)}
    parts = key.split("/")
    thing = parts[2] if len(parts) > 3 else ""
    origin: dict[str, Any] = {"kind": "edge_feedback", "device": thing}
    if not _THING.match(thing):
        raise OriginMismatch(f"{FEEDBACK_PREFIX}<thing>/<file> names no thing: {key[:256]!r}", origin)
    if claimed_kind is not None and claimed_kind not in _FEEDBACK_KINDS:
        raise OriginMismatch(f"metadata claims origin {claimed_kind[:64]!r} for a frame {thing} uploaded", origin)
    if claimed_device is not None and claimed_device != thing:
        raise OriginMismatch(
            f"metadata claims device {claimed_device[:128]!r} but the object was written under "
            f"{FEEDBACK_PREFIX}{thing}/, the prefix only {thing}'s credentials write",
            origin,
        )
    if "model-version" in meta or "model_version" in meta:
        origin["model_version"] = meta.get("model-version") or meta.get("model_version")
    confidence = meta.get("max-confidence") or meta.get("confidence")  # the device sends max-confidence
    if confidence is not None:
        try:
            value = float(confidence)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            origin["confidence"] = str(round(value, 6))
        else:  # not a number, or NaN/Infinity: kept as the text it was, never as a number
            origin["confidence_raw"] = confidence[:64]
    if "reason" in meta:
        origin["reason"] = meta["reason"][:256]
    if "boxes" in meta:
        try:
            origin["boxes"] = predicted_boxes(meta["boxes"])
        except ValueError as exc:  # the frame is still a good frame: only its predictions are not kept
            origin["boxes_note"] = f"boxes not kept: {exc}"[:256]
    origin.update(_capture(meta, origin))
    return origin


# The device's boxes fit in S3's 2 KB of user metadata (loupe_edge.app.BOXES_METADATA_BYTES, 1500 bytes); a value
# longer than S3 allows cannot be one a device wrote.
MAX_BOXES_TEXT = 2048
MAX_BOXES = 100


def predicted_boxes(text: str) -> str:
    """The device's predicted boxes (S3 metadata ``boxes``: ``[[class_id, confidence, x1, y1, x2, y2], ...]`` in the
    frame's pixels, :func:`loupe_edge.app.boxes_metadata`) as canonical compact JSON, for the ledger (a string:
    DynamoDB takes no floats). ValueError, with the rule broken, for anything else: not JSON, not a list of rows of
    six finite numbers, a class that is not a non-negative integer, a confidence outside [0, 1], a box with a
    negative corner, corners out of order or a side over :data:`MAX_SIDE`, more than :data:`MAX_BOXES` boxes."""
    if len(text) > MAX_BOXES_TEXT:
        raise ValueError(f"{len(text)} characters (at most {MAX_BOXES_TEXT})")
    try:
        rows = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(rows, list):
        raise ValueError("not a list of boxes")
    if len(rows) > MAX_BOXES:
        raise ValueError(f"{len(rows)} boxes (at most {MAX_BOXES})")
    out: list[list[float | int]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 6:
            raise ValueError(f"box {i} is not [class_id, confidence, x1, y1, x2, y2]")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in row):
            raise ValueError(f"box {i} holds a value that is not a finite number")
        class_id, confidence, x1, y1, x2, y2 = row
        if class_id != int(class_id) or class_id < 0:
            raise ValueError(f"box {i}: class {class_id!r} is not a non-negative integer")
        if not 0 <= confidence <= 1:
            raise ValueError(f"box {i}: confidence {confidence!r} outside [0, 1]")
        if min(x1, y1) < 0 or x2 < x1 or y2 < y1 or max(x2, y2) > MAX_SIDE:
            raise ValueError(f"box {i}: corners {[x1, y1, x2, y2]} not 0 <= x1 <= x2, 0 <= y1 <= y2 <= {MAX_SIDE}")
        out.append([int(class_id), float(confidence), float(x1), float(y1), float(x2), float(y2)])
    return json.dumps(out, separators=(",", ":"))


class BadCapture(OriginMismatch):
    """The upload's capture id is malformed; ``origin`` is the object's origin without it."""

    def __init__(self, reason: str, origin: dict[str, Any]) -> None:
        super().__init__(reason, origin)
        self.code = "bad-capture"


def _capture(meta: dict[str, str], origin: dict[str, Any]) -> dict[str, str]:
    """The upload's capture id (``x-amz-meta-loupe-capture``): every crop of one camera capture carries the same id,
    and the dataset puts them all in one split (:func:`loupe.datasets.split_of`). A malformed id rejects the object
    with the rule it breaks (quarantined, redrivable once re-uploaded with a good id)."""
    if "capture" not in meta:
        return {}
    try:
        return {"capture": valid_capture(meta["capture"])}
    except DatasetError as exc:
        raise BadCapture(f"metadata loupe-capture: {exc}", dict(origin)) from exc


_TAG_SAFE = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")


def tag_value(text: str) -> str:
    """S3 tag values allow letters, digits, spaces and + - = . _ : / @, up to 256 characters."""
    return _TAG_SAFE.sub(" ", text)[:256].strip() or "rejected"


def quarantine_key(key: str, digest: str) -> str:
    rest = key.removeprefix("raw/")
    return f"{QUARANTINE_PREFIX}{digest[:16]}/{rest}"


@dataclass
class IngestResult:
    sha256: str
    status: str  # unlabeled | rejected | ... (the ledger status after this event)
    created: bool  # a new ledger entry (and an "Image Recorded" announcement)
    key: str
    reason: str = ""
    quarantined: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "status": self.status,
            "created": self.created,
            "key": self.key,
            "reason": self.reason,
            "quarantined": self.quarantined,
        }


def _get(s3: S3, ref: ObjectRef) -> tuple[str, dict[str, Any]] | None:
    """(key, GetObject response) for the first candidate key that exists, else None."""
    for key in key_candidates(ref.key):
        kwargs: dict[str, Any] = {"Bucket": ref.bucket, "Key": key}
        if ref.version_id and ref.version_id != "null":
            kwargs["VersionId"] = ref.version_id
        try:
            return key, s3.get_object(**kwargs)
        except Exception as exc:
            if aws_errors.error_code(exc) in _ABSENT_CODES:
                continue
            raise
    return None


def ingest_object(
    s3: S3,
    ledger: Ledger,
    ref: ObjectRef,
    announce: Announce | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> IngestResult:
    """Validate one object and record it in ``ledger`` (a :class:`loupe.ledger.Ledger`).

    ``announce(sha256, origin)`` is called once for each newly recorded, accepted image. Bad input is copied to
    ``quarantine/`` with its reason as a tag and recorded as ``rejected``; nothing is deleted, nothing raises for
    bad input (AWS errors other than a missing object do raise, so the event is retried).
    """
    found = _get(s3, ref)
    if found is None:
        # The object is gone (deleted before we ran, every version). Record the fact, keyed by the object's
        # identity since there are no bytes to hash.
        identity = f"{ref.uri}#{ref.version_id or ref.etag or ''}"
        digest = sha256_bytes(identity.encode())
        reason = "object no longer exists (deleted before ingest)"
        created = ledger.record_rejected(
            digest, ref.uri, size=0, reason=reason, code="missing", origin={"kind": "upload"}
        )
        return IngestResult(digest, "rejected", created, ref.key, reason=reason)
    key, response = found
    mismatch: OriginMismatch | None = None
    try:
        origin = origin_from_metadata(key, response.get("Metadata") or {})
    except OriginMismatch as exc:
        mismatch, origin = exc, exc.origin
    uri = f"s3://{ref.bucket}/{key}"
    size = int(response.get("ContentLength") or 0)
    if size > limits.max_bytes:
        # refused from GetObject's headers: the body is never read (closed, so the connection is not drained).
        # No bytes, so the entry is keyed by the object's identity, as S3 names it (version, else ETag).
        _close(response["Body"])
        identity = f"{uri}#{response.get('VersionId') or response.get('ETag') or ref.version_id or ref.etag or ''}"
        rej = ImageRejected(f"object too large: {size} bytes > {limits.max_bytes}", "too-large")
        return _reject(s3, ledger, ref, key, sha256_bytes(identity.encode()), size, rej, origin)
    # never more than one byte over the limit, whatever ContentLength said
    data = response["Body"].read(limits.max_bytes + 1)
    try:
        if len(data) > limits.max_bytes:
            _close(response["Body"])
            raise ImageRejected(f"object too large: over {limits.max_bytes} bytes", "too-large")
        if mismatch is not None:
            raise mismatch
        info = inspect_image(data, limits)
    except ImageRejected as rej:
        return _reject(s3, ledger, ref, key, sha256_bytes(data), max(size, len(data)), rej, origin)
    image_uri = uri
    if info.normalized is not None:
        nkey = f"{NORMALIZED_PREFIX}{info.sha256}.{info.format}"
        s3.put_object(
            Bucket=ref.bucket,
            Key=nkey,
            Body=info.normalized,
            ContentType="image/jpeg" if info.format == "jpg" else "image/png",
            Metadata={"loupe-source": uri[:1000], "loupe-sha256": info.sha256},
        )
        image_uri = f"s3://{ref.bucket}/{nkey}"
    created, status = ledger.record_image(info, uri, image_uri=image_uri, origin=origin)
    if created and announce is not None:
        announce(info.sha256, origin)
    return IngestResult(info.sha256, status, created, key)


def _close(body: Any) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _reject(
    s3: S3,
    ledger: Ledger,
    ref: ObjectRef,
    key: str,
    digest: str,
    size: int,
    rej: ImageRejected,
    origin: dict[str, Any],
) -> IngestResult:
    """Copy the object to ``quarantine/`` with its reason as tags (server side: nothing is read here) and record it
    as rejected. An object over CopyObject's 5 GB stays where it is, recorded with its reason."""
    uri = f"s3://{ref.bucket}/{key}"
    qkey = ""
    if size <= MAX_COPY_BYTES:
        qkey = quarantine_key(key, digest)
        version = {"VersionId": ref.version_id} if ref.version_id else {}
        s3.copy_object(
            Bucket=ref.bucket,
            Key=qkey,
            CopySource={"Bucket": ref.bucket, "Key": key, **version},
            TaggingDirective="REPLACE",
            Tagging=f"loupe-reason={_url_tag(tag_value(rej.reason))}&loupe-code={rej.code}",
            MetadataDirective="COPY",
        )
    created = ledger.record_rejected(
        digest, uri, size=size, reason=rej.reason, code=rej.code, origin=origin, quarantine=qkey
    )
    return IngestResult(digest, "rejected", created, key, reason=rej.reason, quarantined=qkey)


def _url_tag(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def announcer(events: EventBridge) -> Announce:
    """``announce(sha256, origin)`` putting "Image Recorded" (source loupe.ingest) on the default event bus, which
    starts the labeling trigger; a rejected entry raises so the event is retried."""
    import json

    def announce(sha256: str, origin: dict[str, Any]) -> None:
        out = events.put_events(
            Entries=[
                {
                    "Source": "loupe.ingest",
                    "DetailType": "Image Recorded",
                    "Detail": json.dumps({"sha256": sha256, "origin": origin}),
                }
            ]
        )
        if out.get("FailedEntryCount"):
            raise RuntimeError(f"could not announce {sha256}: {out['Entries']}")

    return announce


def object_to_ingest(change: S3EventNotificationEventBridgeModel, raw_bucket: str) -> dict[str, Any]:
    """The identity of the object an S3 Object Created event names (the fields of :class:`ObjectRef`): its version,
    or without versioning its ETag. Another bucket's object, or one outside raw/, raises
    :class:`loupe.eventbridge.Ignored`."""
    from loupe.eventbridge import check_raw_object

    detail = check_raw_object(change, raw_bucket).detail
    version = detail.object.version_id
    return {
        "bucket": detail.bucket.name,
        "key": detail.object.key,
        "version_id": version,
        "etag": None if version else detail.object.etag,
    }
