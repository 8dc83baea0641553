"""ingest_object spends memory only after the limits allow it: an object over the byte limit is refused from
GetObject's ContentLength (its body never read), a small file whose header says 40 megapixels is refused from the
header (never decoded); both are quarantined (a server-side copy) and recorded as rejected with the reason."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import ImageFile
from support import image_samples as samples
from support.ingest_fakes import S3, Body, Ledger

from loupe.imaging import MAX_BYTES, Limits
from loupe.ingest import ObjectRef, ingest_object

BUCKET = "raw-bucket"


def test_an_object_over_the_byte_limit_is_refused_before_its_body_is_read() -> None:
    size = MAX_BYTES + 1
    s3 = S3(Body(b"", forbidden=True), content_length=size)
    ledger = Ledger()
    result = ingest_object(s3, ledger, ObjectRef(bucket=BUCKET, key="raw/huge.jpg", version_id="v1"))  # type: ignore[arg-type]
    assert result.status == "rejected"
    assert result.reason == f"object too large: {size} bytes > {MAX_BYTES}"
    assert s3.body.closed  # not drained: the connection is let go
    (record,) = ledger.rejected
    assert record["code"] == "too-large" and record["size"] == size and record["quarantine"] == result.quarantined
    (copy,) = s3.copies  # the object itself is kept in quarantine (server side), with its reason
    assert copy["Key"] == result.quarantined and copy["Key"].startswith("quarantine/")
    assert copy["CopySource"] == {"Bucket": BUCKET, "Key": "raw/huge.jpg", "VersionId": "v1"}
    assert "loupe-code=too-large" in copy["Tagging"]
    assert ledger.images == []


def test_a_body_longer_than_its_content_length_is_read_only_to_the_limit() -> None:
    limits = Limits(max_bytes=1000)
    s3 = S3(Body(samples.jpeg(200, 200) + b"\0" * 5000), content_length=10)
    result = ingest_object(s3, Ledger(), ObjectRef(bucket=BUCKET, key="raw/liar.jpg"), limits=limits)  # type: ignore[arg-type]
    assert result.status == "rejected" and result.reason == "object too large: over 1000 bytes"
    assert s3.body.read_sizes == [1001]


@pytest.fixture(scope="module")
def forty_megapixels() -> bytes:
    return samples.large_grey_jpeg(8000, 5000)


def test_a_small_file_of_40_megapixels_is_quarantined_from_its_header_without_decoding(
    forty_megapixels: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(forty_megapixels) < 2 * 1024 * 1024  # small on disk; 120 MB and more once decoded

    def no_decode(self: Any) -> Any:
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    s3 = S3(Body(forty_megapixels), content_length=len(forty_megapixels))
    ledger = Ledger()
    result = ingest_object(s3, ledger, ObjectRef(bucket=BUCKET, key="raw/line-3/big.jpg"))  # type: ignore[arg-type]
    assert result.status == "rejected"
    assert result.reason.startswith("too many pixels: 8000x5000 = 40000000 > limit")
    (record,) = ledger.rejected
    assert record["code"] == "bomb" and record["size"] == len(forty_megapixels)
    (copy,) = s3.copies
    assert copy["Key"] == result.quarantined == f"quarantine/{result.sha256[:16]}/line-3/big.jpg"
    assert "too+many+pixels" in copy["Tagging"] or "too%20many%20pixels" in copy["Tagging"]


def test_an_image_within_the_limits_is_still_accepted() -> None:
    data = samples.jpeg(96, 64)
    s3 = S3(Body(data), content_length=len(data))
    ledger = Ledger()
    result = ingest_object(s3, ledger, ObjectRef(bucket=BUCKET, key="raw/ok.jpg"))  # type: ignore[arg-type]
    assert result.status == "unlabeled" and ledger.rejected == [] and s3.copies == []
    assert ledger.images[0].size == len(data)
