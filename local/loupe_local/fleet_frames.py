"""Where the pixels of a device's inference result are, for the console's Fleet page.

A device's MQTT result (``loupe/<thing>/inference``) carries its boxes, confidences and the frame's size, never its
pixels. The frames a device finds uncertain are the ones it sends back: it uploads the image to the raw bucket
under ``raw/feedback/<thing>/<frame id>.<ext>`` and then announces it on ``loupe/<thing>/low-confidence`` (the
feedback path). So a result's image is in S3 exactly when the device uploaded it; for any other frame the page says
so instead of drawing a placeholder.

The key comes from the announcement the console's MQTT feed saw (checked to be the raw bucket, under that thing's
feedback prefix: the thing is the topic's, as the feedback function reads it), else from listing the thing's
feedback prefix for the frame id (an announcement the feed missed). Read-only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from loupe import aws_errors
from loupe_local.evaluations import image_type

FEEDBACK_PREFIX = "raw/feedback"
THING = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
FRAME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
NOT_SENT = "image not sent by the device (only uncertain frames are uploaded)"
NOT_YET = (
    "uncertain frame, image not uploaded (yet): the device uploads uncertain frames within its feedback rate "
    "limit and daily cap, from its outbox"
)

Announced = Callable[[str, str], tuple[str, str] | None]


def feedback_key_ok(thing: str, key: str) -> bool:
    return key.startswith(f"{FEEDBACK_PREFIX}/{thing}/") and ".." not in key


class FramePixels:
    """Resolves (thing, frame id) to the uploaded image in the raw bucket. ``announced(thing, frame_id)`` gives
    the (bucket, key) of a low-confidence announcement seen on MQTT, or None."""

    def __init__(self, s3: Callable[[], Any], raw_bucket: str, announced: Announced | None = None) -> None:
        self._s3 = s3
        self.raw_bucket = raw_bucket
        self._announced = announced
        self._found: dict[tuple[str, str], str] = {}  # an uploaded frame stays where it is

    def key(self, thing: str, frame_id: str) -> str | None:
        """The raw bucket key of this frame's uploaded image, or None (not uploaded, or not yet)."""
        if not THING.match(thing) or not FRAME_ID.match(frame_id):
            return None
        if (thing, frame_id) in self._found:
            return self._found[(thing, frame_id)]
        seen = self._announced(thing, frame_id) if self._announced else None
        if seen is not None:
            bucket, key = seen
            if bucket == self.raw_bucket and feedback_key_ok(thing, key):
                self._found[(thing, frame_id)] = key
                return key
        listed = self._s3().list_objects_v2(
            Bucket=self.raw_bucket, Prefix=f"{FEEDBACK_PREFIX}/{thing}/{frame_id}.", MaxKeys=1
        )
        for obj in listed.get("Contents", []):
            self._found[(thing, frame_id)] = obj["Key"]
            return str(obj["Key"])
        return None

    def annotate(self, thing: str, result: dict[str, Any]) -> dict[str, Any]:
        """The result with ``pixels``: ``{"key"}`` where its image is in the raw bucket, else ``{"missing": why}``.
        Only an uncertain frame can have been uploaded: a confident one is not looked up."""
        frame_id = str(result.get("frame_id") or "")
        key = self.key(thing, frame_id) if result.get("uncertain") else None
        if key is not None:
            pixels: dict[str, Any] = {"key": key}
        else:
            pixels = {"missing": NOT_YET if result.get("uncertain") else NOT_SENT}
        return {**result, "pixels": pixels}

    def image(self, thing: str, frame_id: str) -> tuple[bytes, str]:
        """The uploaded image's bytes and type; LookupError when the device did not upload this frame,
        :class:`~loupe_local.evaluations.NotAnImage` when what it uploaded is not a JPEG or PNG."""
        key = self.key(thing, frame_id)
        if key is None:
            raise LookupError(f"{thing} did not upload frame {frame_id}: {NOT_SENT}")
        try:
            obj = self._s3().get_object(Bucket=self.raw_bucket, Key=key)
        except ClientError as exc:
            if aws_errors.is_not_found(exc):
                self._found.pop((thing, frame_id), None)
                raise LookupError(f"s3://{self.raw_bucket}/{key} does not exist") from exc
            raise
        data = obj["Body"].read()
        return data, image_type(data, f"s3://{self.raw_bucket}/{key}")
