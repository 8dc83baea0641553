"""The boxes a device puts in its uncertain frame's S3 metadata: bounded to fit S3's 2 KB of user metadata, and read
back by the console's Fleet page (``loupe.console_api.fleet.parse_boxes``) as the device found them."""

from __future__ import annotations

from loupe.console_api.fleet import parse_boxes
from loupe_edge.results import BOXES_METADATA_BYTES, boxes_metadata


def _box(i: int) -> dict:
    return {
        "class_id": 0,
        "class_name": "scratch",
        "confidence": round(0.3 + i / 1000, 4),
        "xyxy": [i, i, i + 10.5, i + 20.0],
    }


def test_many_boxes_are_cut_to_the_metadata_budget_keeping_the_most_confident() -> None:
    boxes = [_box(i) for i in range(300)]
    text = boxes_metadata(boxes)
    assert len(text.encode()) <= BOXES_METADATA_BYTES
    parsed, note = parse_boxes(text)
    assert note == "" and 10 < len(parsed) < 300
    assert parsed[0]["confidence"] == max(b["confidence"] for b in boxes)


def test_the_page_reads_back_what_the_device_wrote() -> None:
    parsed, note = parse_boxes(boxes_metadata([_box(3)]))
    assert note == "" and parsed == [{"class_id": 0, "confidence": 0.303, "xyxy": [3.0, 3.0, 13.5, 23.0]}]
    assert parse_boxes(boxes_metadata([])) == ([], "")


def test_what_a_device_wrote_badly_is_refused_with_a_note_not_raised() -> None:
    for raw in ('{"a": 1}', "[[0, 0.5, 1, 2]]", "[[0, 2.0, 1, 1, 5, 5]]", "[[0, 0.5, 9, 9, 1, 1]]", "not json"):
        boxes, note = parse_boxes(raw)
        assert boxes == [] and "cannot be read" in note, raw
    assert parse_boxes(None) == ([], "the device sent no boxes with this frame")
