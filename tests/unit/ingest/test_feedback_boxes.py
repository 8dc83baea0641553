"""A device's frame comes with the boxes its model predicted (S3 metadata ``boxes``); ingest keeps them, validated and
bounded, in the ledger entry's origin (the canary's labeled precision compares them with the labels). Boxes that are
not what a device writes are not kept, with a note; the frame itself is never refused for them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from support import image_samples as samples
from support.ingest_fakes import S3, Body
from support.stack_tables import template_table_properties

from loupe.ingest import ObjectRef, ingest_object, origin_from_metadata, predicted_boxes
from loupe.ledger import Ledger
from loupe_edge.results import boxes_metadata

KEY = "raw/feedback/cam-7/f1.png"
META = {"device": "cam-7", "model-version": "7", "max-confidence": "0.41", "reason": "confidence-band"}


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName="ledger", **template_table_properties("LedgerTable"))
        yield Ledger(dynamodb.Table("ledger"))


def ingest(ledger: Ledger, metadata: dict[str, str]) -> dict:
    data = samples.png(80, 60, seed=2317)
    s3 = S3(Body(data), content_length=len(data), metadata=metadata)
    result = ingest_object(s3, ledger, ObjectRef(bucket="raw-bucket", key=KEY))  # type: ignore[arg-type]
    assert result.status == "unlabeled", result.reason  # recorded as a good frame, whatever its boxes
    entry = ledger.get(result.sha256)
    assert entry is not None
    return entry["origin"]


def test_the_boxes_a_device_writes_are_kept_with_the_frame(ledger: Ledger) -> None:
    boxes = [
        {"class_id": 0, "confidence": 0.41, "xyxy": [10.0, 12.5, 30.0, 40.0]},
        {"class_id": 2, "confidence": 0.93, "xyxy": [0.0, 0.0, 80.0, 60.0]},
    ]
    origin = ingest(ledger, {**META, "boxes": boxes_metadata(boxes)})  # as loupe_edge uploads it
    assert json.loads(origin["boxes"]) == [[2, 0.93, 0.0, 0.0, 80.0, 60.0], [0, 0.41, 10.0, 12.5, 30.0, 40.0]]
    assert origin["model_version"] == "7" and "boxes_note" not in origin
    # no box at all is a prediction too (the model saw nothing)
    assert origin_from_metadata(KEY, {**META, "boxes": "[]"})["boxes"] == "[]"
    # a frame of a device that sends no boxes: nothing kept, nothing noted
    assert "boxes" not in origin_from_metadata(KEY, META) and "boxes_note" not in origin_from_metadata(KEY, META)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[[0, 0.5, 1, 2, 3", "not JSON"),
        ('{"class_id": 0}', "not a list of boxes"),
        ("[[0, 0.5, 1, 2, 3]]", "box 0 is not [class_id, confidence, x1, y1, x2, y2]"),
        ('[[0, 0.5, 1, 2, 3, "4"]]', "box 0 holds a value that is not a finite number"),
        ("[[0, 0.5, 1, 2, 3, NaN]]", "box 0 holds a value that is not a finite number"),
        ("[[0, 0.5, 1, 2, 3, Infinity]]", "box 0 holds a value that is not a finite number"),
        ("[[0, true, 1, 2, 3, 4]]", "box 0 holds a value that is not a finite number"),
        ("[[1.5, 0.5, 1, 2, 3, 4]]", "box 0: class 1.5 is not a non-negative integer"),
        ("[[-1, 0.5, 1, 2, 3, 4]]", "box 0: class -1 is not a non-negative integer"),
        ("[[0, 1.5, 1, 2, 3, 4]]", "box 0: confidence 1.5 outside [0, 1]"),
        ("[[0, 0.5, 5, 2, 3, 4]]", "box 0: corners [5, 2, 3, 4] not 0 <= x1 <= x2"),
        ("[[0, 0.5, -1, 2, 3, 4]]", "not 0 <= x1 <= x2"),
        ("[[0, 0.5, 1, 2, 3, 40000]]", "<= 20000"),
        (json.dumps([[0, 0.5, 1, 2, 3, 4]] * 101), "characters (at most 2048)"),
        (json.dumps([[0, 0, 0, 0, 0, 0]] * 101), "101 boxes (at most 100)"),
    ],
)
def test_boxes_a_device_does_not_write_are_not_kept_and_the_frame_is(ledger: Ledger, text: str, why: str) -> None:
    with pytest.raises(ValueError, match="."):
        predicted_boxes(text)
    origin = ingest(ledger, {**META, "boxes": text})
    assert "boxes" not in origin
    assert origin["boxes_note"].startswith("boxes not kept: ") and why in origin["boxes_note"], origin["boxes_note"]
    assert len(origin["boxes_note"]) <= 256
    assert origin["model_version"] == "7"  # the rest of the origin is kept as before
