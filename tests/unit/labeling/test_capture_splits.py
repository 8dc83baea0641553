"""Crops of one camera capture are near-duplicates: they share a split (never one in train and its sibling in test),
by the capture id an upload carries (``loupe-capture`` metadata, or a folder's crop names); an image without one is
split by its own hash as before."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from loupe.datasets import (
    DatasetError,
    LabeledImage,
    capture_metadata,
    capture_of_name,
    load_metal_tags,
    sha256_bytes,
    split_for,
    split_of,
    valid_capture,
)
from loupe.ingest import BadCapture, origin_from_metadata


def test_the_crop_naming_convention_names_the_capture() -> None:
    name = "image-2020-04-22-11-07-29-26-cropped-left-top.jpg"
    assert capture_of_name(name) == "image-2020-04-22-11-07-29-26"
    assert capture_of_name(f"images/bad/{name}") == "image-2020-04-22-11-07-29-26"
    assert capture_of_name("image-2020-04-22-11-07-29-26-cropped-right-bottom.jpg_3") == "image-2020-04-22-11-07-29-26"
    assert capture_of_name("frame-0001.jpg") is None  # no crop suffix: a capture of its own
    assert capture_of_name("-cropped-left.jpg") is None
    assert capture_metadata(name) == {"loupe-capture": "image-2020-04-22-11-07-29-26"}
    assert capture_metadata("frame-0001.jpg") == {}


def test_every_crop_of_a_capture_gets_the_captures_split() -> None:
    captures = [f"cap-{n}" for n in range(60)]
    for capture in captures:
        crops = {split_of(sha256_bytes(f"{capture}/{where}".encode()), capture) for where in ("lt", "lb", "rt", "rb")}
        assert len(crops) == 1
    # the captures still spread over the three splits
    assert {split_of("0" * 64, c) for c in captures} == {"train", "val", "test"}


def test_an_image_without_a_capture_keeps_its_hash_split() -> None:
    digest = sha256_bytes(b"one frame")
    image = LabeledImage(sha256=digest, width=10, height=10, boxes=[], source_ref="x")
    assert image.split == split_for(digest) == split_of(digest, None)
    grouped = LabeledImage(
        sha256=digest, width=10, height=10, boxes=[], source_ref="x", origin={"kind": "upload", "capture": "c-9"}
    )
    assert grouped.split == split_of("f" * 64, "c-9")


@pytest.mark.parametrize("bad", ["", " lead", "a/b", "x" * 129, "naïve", "-dash-first", "a\nb"])
def test_a_malformed_capture_id_is_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(DatasetError, match="capture id"):
        valid_capture(bad)


def test_ingest_keeps_a_good_capture_and_rejects_a_bad_one_with_its_reason() -> None:
    assert origin_from_metadata("raw/uploads/a.jpg", {"loupe-capture": "cam1-0042"}) == {
        "kind": "upload",
        "capture": "cam1-0042",
    }
    feedback = origin_from_metadata("raw/feedback/loupe-device-1/f.jpg", {"loupe-capture": "c7"})
    assert feedback["device"] == "loupe-device-1" and feedback["capture"] == "c7"
    with pytest.raises(BadCapture, match="loupe-capture") as refused:
        origin_from_metadata("raw/uploads/a.jpg", {"loupe-capture": "../../etc"})
    assert refused.value.code == "bad-capture" and refused.value.origin == {"kind": "upload"}


def test_the_metal_tags_photos_never_split_a_capture(metal_tags_dir: Path) -> None:
    tags = load_metal_tags(metal_tags_dir)
    by_capture: dict[str, set[str]] = defaultdict(set)
    for image in tags.labeled:
        capture = image.origin.get("capture")
        assert capture == capture_of_name(image.source_ref), image.source_ref
        by_capture[str(capture)].add(image.split)
    assert len(by_capture) > 40  # 193 labeled crops of about 60 captures
    assert all(len(splits) == 1 for splits in by_capture.values()), {c: s for c, s in by_capture.items() if len(s) > 1}
    counts = defaultdict(int)
    for image in tags.labeled:
        counts[image.split] += 1
    assert counts["test"] >= 30 and counts["train"] >= 100, dict(counts)  # 43 / 111 at this writing
