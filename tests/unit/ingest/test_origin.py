"""Who an object came from is what its key proves, not what its metadata says: only a device's credentials write
under raw/feedback/<its thing>/, so that thing is the device; metadata that contradicts it is recorded as rejected
with the reason (and the object quarantined), never as the claimed device's frame."""

from __future__ import annotations

import pytest
from support import image_samples as samples
from support.ingest_fakes import S3, Body, Ledger

from loupe.ingest import ObjectRef, OriginMismatch, ingest_object, origin_from_metadata

BUCKET = "raw-bucket"
EDGE_METADATA = {"device": "cam-7", "model-version": "3", "max-confidence": "0.38", "reason": "low_confidence"}


def ingest(key: str, metadata: dict[str, str]) -> tuple[S3, Ledger, dict]:
    data = samples.jpeg(96, 64, seed=11)
    s3, ledger = S3(Body(data), content_length=len(data), metadata=metadata), Ledger()
    result = ingest_object(s3, ledger, ObjectRef(bucket=BUCKET, key=key))  # type: ignore[arg-type]
    return s3, ledger, result.as_dict()


def test_a_device_frame_keeps_the_thing_of_its_key() -> None:
    s3, ledger, result = ingest("raw/feedback/cam-7/f1.jpg", EDGE_METADATA)
    assert result["status"] == "unlabeled" and ledger.rejected == []
    # without metadata the key still says who: the device is never left to the metadata
    assert origin_from_metadata("raw/feedback/cam-7/f1.jpg", {})["device"] == "cam-7"


@pytest.mark.parametrize(
    ("key", "metadata", "why", "proven"),
    [
        # cam-7's credentials wrote it; its metadata names cam-9
        (
            "raw/feedback/cam-7/f1.jpg",
            {**EDGE_METADATA, "device": "cam-9"},
            "claims device 'cam-9' but the object was written under raw/feedback/cam-7/",
            {"kind": "edge_feedback", "device": "cam-7"},
        ),
        (
            "raw/feedback/cam-7/f1.jpg",
            {"loupe-device": "cam-9"},
            "claims device 'cam-9'",
            {"kind": "edge_feedback", "device": "cam-7"},
        ),
        # an upload outside the devices' prefix claiming to be a device's frame
        (
            "raw/line-3/x.jpg",
            {"loupe-origin": "edge_feedback", "loupe-device": "cam-7"},
            "claims edge feedback from device 'cam-7' but the object is not under raw/feedback/",
            {"kind": "upload"},
        ),
        ("raw/x.jpg", {"device": "cam-7"}, "not under raw/feedback/", {"kind": "upload"}),
        # a device's frame claiming to be a person's upload
        (
            "raw/feedback/cam-7/f1.jpg",
            {"loupe-origin": "upload"},
            "claims origin 'upload'",
            {"kind": "edge_feedback", "device": "cam-7"},
        ),
    ],
)
def test_metadata_that_contradicts_the_key_is_recorded_as_rejected(
    key: str, metadata: dict[str, str], why: str, proven: dict
) -> None:
    with pytest.raises(OriginMismatch, match=why):
        origin_from_metadata(key, metadata)
    s3, ledger, result = ingest(key, metadata)
    assert result["status"] == "rejected" and why in result["reason"]
    (record,) = ledger.rejected
    assert record["code"] == "origin-mismatch" and record["origin"] == proven
    (copy,) = s3.copies  # the object is kept in quarantine with its reason
    assert copy["Key"] == result["quarantined"] and "loupe-code=origin-mismatch" in copy["Tagging"]


def test_non_finite_confidence_in_metadata_is_kept_as_text_not_as_a_number() -> None:
    for text in ("NaN", "inf", "-Infinity", "high"):
        origin = origin_from_metadata("raw/feedback/cam-7/f1.jpg", {**EDGE_METADATA, "max-confidence": text})
        assert "confidence" not in origin and origin["confidence_raw"] == text
