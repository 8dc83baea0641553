"""In-memory fakes of what ``loupe.ingest.ingest_object`` calls: a GetObject body that records (or forbids) reads,
an S3 client answering one object, a ledger recording what it was told (unit tests only)."""

from __future__ import annotations

import io
from typing import Any

BUCKET = "raw-bucket"


class Body:
    """A GetObject body that records reads; ``forbidden`` makes any read fail the test."""

    def __init__(self, data: bytes, forbidden: bool = False) -> None:
        self._stream = io.BytesIO(data)
        self.forbidden = forbidden
        self.read_sizes: list[int | None] = []
        self.closed = False

    def read(self, amt: int | None = None) -> bytes:
        if self.forbidden:
            raise AssertionError("the body was read although ContentLength is over the limit")
        self.read_sizes.append(amt)
        return self._stream.read() if amt is None else self._stream.read(amt)

    def close(self) -> None:
        self.closed = True


class S3:
    def __init__(self, body: Body, content_length: int, metadata: dict[str, str] | None = None) -> None:
        self.body = body
        self.content_length = content_length
        self.metadata = metadata or {}
        self.copies: list[dict[str, Any]] = []
        self.puts: list[dict[str, Any]] = []

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "Body": self.body,
            "ContentLength": self.content_length,
            "ETag": '"0123abcd"',
            "VersionId": "v1",
            "Metadata": self.metadata,
        }

    def copy_object(self, **kwargs: Any) -> None:
        self.copies.append(kwargs)

    def put_object(self, **kwargs: Any) -> None:
        self.puts.append(kwargs)

    def head_object(self, **kwargs: Any) -> dict[str, Any]:
        return {"ContentLength": self.content_length}


class Ledger:
    def __init__(self) -> None:
        self.rejected: list[dict[str, Any]] = []
        self.images: list[Any] = []

    def record_rejected(self, digest: str, uri: str, **kwargs: Any) -> bool:
        self.rejected.append({"sha256": digest, "uri": uri, **kwargs})
        return True

    def record_image(self, info: Any, uri: str, **kwargs: Any) -> tuple[bool, str]:
        self.images.append(info)
        return True, "unlabeled"
