"""Each kind of bad answer is refused with its HTTP status and a message that names the box and the rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.labeling_app import box

from loupe.datasets import Box
from loupe.labeling.answers import MAX_BODY_BYTES, AnswerError, parse_body, validate

CLASSES = {"0": "scratch", "1": "dent"}
W, H = 160, 120


def test_a_good_answer_becomes_boxes() -> None:
    answer = validate({"boxes": [box(0, 0, 160, 120), box(10.5, 20, 30, 4, "dent")]}, W, H, CLASSES)
    assert answer.boxes == (Box(0, 0, 0, 160, 120), Box(1, 10.5, 20, 30, 4))
    assert validate({"boxes": []}, W, H, CLASSES).boxes == ()  # no defect


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"boxes": [box(150, 10, 20, 10)]}, "box 1: left=150 top=10 width=20 height=10 leaves the 160x120 image"),
        ({"boxes": [box(-1, 10, 20, 10)]}, "leaves the 160x120 image"),
        ({"boxes": [box(10, 115, 20, 10)]}, "leaves the 160x120 image"),
        ({"boxes": [box(10, 10, 0, 10)]}, "box 1: 0x10 px is empty"),
        ({"boxes": [box(10, 10, 1.5, 1.5)]}, "is empty; a box is at least 2x2 px"),
        ({"boxes": [box(10, 10, 20, -5)]}, "is empty"),
        ({"boxes": [box(1, 1, 5, 5), box(10, 10, 5, 5, "rust")]}, "box 2: label 'rust' is not one of this job's"),
        ({"boxes": [box(1, 1, 5, 5)] * 51}, "51 boxes; an answer holds at most 50"),
        ({"boxes": [{**box(1, 1, 5, 5), "left": "1"}]}, "box 1: left must be a number"),
        ({"boxes": [{**box(1, 1, 5, 5), "top": True}]}, "box 1: top must be a number"),
        ({"boxes": [{**box(1, 1, 5, 5), "extra": 1}]}, "box 1: needs exactly label, left, top, width and height"),
        ({"boxes": [{"label": "scratch", "left": 1}]}, "needs exactly"),
        ({"boxes": [], "note": "x"}, "and nothing else"),
        ({"boxes": {"0": box(1, 1, 5, 5)}}, 'the body must be {"boxes": [...]}'),
        ([box(1, 1, 5, 5)], 'the body must be {"boxes": [...]}'),
        (None, 'the body must be {"boxes": [...]}'),
    ],
)
def test_a_bad_answer_is_refused_with_400(body: Any, message: str) -> None:
    with pytest.raises(AnswerError) as refused:
        validate(body, W, H, CLASSES)
    assert refused.value.status == 400
    assert message in refused.value.message


def test_nan_and_infinity_are_refused() -> None:
    # Python's json module accepts the NaN and Infinity tokens; the answer must not
    for token in ("NaN", "Infinity", "-Infinity"):
        body = parse_body(f'{{"boxes": [{{"label": "scratch", "left": {token}, "top": 1, "width": 5, "height": 5}}]}}')
        with pytest.raises(AnswerError) as refused:
            validate(body, W, H, CLASSES)
        assert refused.value.status == 400 and "finite" in refused.value.message, token


def test_an_oversized_body_is_413_before_parsing() -> None:
    big = json.dumps({"boxes": [], "pad": "x" * MAX_BODY_BYTES})
    with pytest.raises(AnswerError) as refused:
        parse_body(big)
    assert refused.value.status == 413 and f"at most {MAX_BODY_BYTES}" in refused.value.message


def test_a_body_that_is_not_json_is_400() -> None:
    with pytest.raises(AnswerError) as refused:
        parse_body(b"boxes=1")
    assert refused.value.status == 400 and "must be JSON" in refused.value.message


def test_the_job_may_allow_fewer_boxes() -> None:
    with pytest.raises(AnswerError, match="at most 3"):
        validate({"boxes": [box(1, 1, 5, 5)] * 4}, W, H, CLASSES, max_boxes=3)
