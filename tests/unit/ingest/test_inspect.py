"""inspect_image: acceptance by content, limits before decoding, normalisation of what labeling cannot use."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from support import image_samples as samples

from loupe.imaging import ImageRejected, Limits, inspect_image
from loupe.ingest import key_candidates, origin_from_metadata, tag_value


def rejected(data: bytes, limits: Limits | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        inspect_image(data, limits or Limits())
    return info.value


def test_plain_jpeg_and_png_are_accepted_as_is():
    jpg = inspect_image(samples.jpeg(96, 64))
    assert (jpg.format, jpg.width, jpg.height, jpg.normalized) == ("jpg", 96, 64, None)
    png = inspect_image(samples.png(80, 60))
    assert (png.format, png.width, png.height, png.normalized) == ("png", 80, 60, None)
    assert jpg.sha256 != png.sha256 and len(jpg.sha256) == 64


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"", "empty", "0 bytes"),
        (samples.text_as_jpg(), "not-an-image", "text"),
        (samples.gif(), "not-an-image", "GIF"),
        (samples.truncated_jpeg(), "corrupt", "decode"),
        (samples.one_pixel(), "too-small", "1x1"),
        (samples.png_bomb(), "bomb", "decompression bomb"),
    ],
    ids=["zero-bytes", "text-named-jpg", "gif-named-png", "truncated-jpeg", "1x1", "png-bomb"],
)
def test_bad_input_is_rejected_with_a_reason(data, code, words):
    err = rejected(data)
    assert err.code == code
    assert words.lower() in err.reason.lower()


def test_bomb_is_refused_from_the_header_under_a_small_limit_too():
    # 2000x2000 is far below PIL's own bomb limit: our pixel limit must refuse it before decoding
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, "PNG")
    err = rejected(buf.getvalue(), Limits(max_pixels=1_000_000))
    assert err.code == "bomb" and "2000x2000" in err.reason


def test_size_limit():
    assert rejected(samples.jpeg(), Limits(max_bytes=100)).code == "too-large"


def test_exif_rotation_is_applied_and_reported_in_displayed_size():
    info = inspect_image(samples.exif_rotated_jpeg(120, 60, orientation=6))
    assert info.orientation == 6
    assert (info.width, info.height) == (60, 120)
    upright = Image.open(io.BytesIO(info.normalized))
    assert upright.size == (60, 120)
    assert not upright.getexif().get(0x0112)
    # the green left quarter of the stored picture is at the top after a 90° clockwise turn
    r, g, b = upright.convert("RGB").getpixel((30, 5))
    assert g > 150 and r < 100


def test_cmyk_jpeg_becomes_rgb():
    info = inspect_image(samples.cmyk_jpeg())
    assert info.mode == "CMYK"
    assert Image.open(io.BytesIO(info.normalized)).mode == "RGB"


def test_16bit_png_becomes_8bit_keeping_its_range():
    info = inspect_image(samples.png_16bit())
    assert info.mode.startswith("I")
    out = Image.open(io.BytesIO(info.normalized))
    assert out.mode == "L" and out.size == (64, 48)
    low, high = out.getextrema()
    assert high > 200 and low < 20


def test_key_candidates_decode_url_encoding_first():
    assert key_candidates("raw/my+photo+%C3%A9t%C3%A9.jpg") == [
        "raw/my photo été.jpg",
        "raw/my+photo+%C3%A9t%C3%A9.jpg",
    ]
    assert key_candidates("raw/plain.jpg") == ["raw/plain.jpg"]


def test_origin_of_edge_feedback_from_metadata():
    origin = origin_from_metadata(
        "raw/feedback/cam-7/2026/x.jpg",
        {"loupe-model-version": "12", "loupe-confidence": "0.41", "loupe-reason": "uncertain"},
    )
    assert origin == {
        "kind": "edge_feedback",
        "device": "cam-7",
        "model_version": "12",
        "confidence": "0.41",
        "reason": "uncertain",
    }
    assert origin_from_metadata("raw/a.jpg", {}) == {"kind": "upload"}
    # what the edge component writes (loupe_edge: device, model-version, max-confidence, reason)
    edge = origin_from_metadata(
        "raw/feedback/cam-7/f1.jpg",
        {"device": "cam-7", "model-version": "3", "max-confidence": "0.3800", "reason": "low_confidence"},
    )
    assert edge == {
        "kind": "edge_feedback",
        "device": "cam-7",
        "model_version": "3",
        "confidence": "0.38",
        "reason": "low_confidence",
    }


def test_tag_values_only_use_allowed_characters():
    value = tag_value("PNG does not decode: broken data stream when reading image file (1/2) [x]")
    assert all(c.isalnum() or c in " +-=._:/@" for c in value)
    assert len(tag_value("x" * 1000)) == 256
