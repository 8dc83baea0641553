"""Box-by-box consolidation of several labelers' answers: IoU matching at 0.5, the mean box, agreement per image,
and which disagreements go to a reviewer."""

from __future__ import annotations

import pytest

from loupe.datasets import Box
from loupe.labeling.consolidation import IOU_MATCH, consolidate, iou

A = Box(0, 10, 10, 40, 20)


def shifted(box: Box, dx: float, dy: float = 0.0, class_id: int | None = None) -> Box:
    return Box(box.class_id if class_id is None else class_id, box.left + dx, box.top + dy, box.width, box.height)


def test_iou_of_known_boxes() -> None:
    assert iou(A, A) == 1.0
    assert iou(A, shifted(A, 40)) == 0.0
    # half the width apart: overlap 20x20 = 400, union 800 + 800 - 400
    assert iou(A, shifted(A, 20)) == pytest.approx(400 / 1200)


def test_two_labelers_who_agree_give_the_mean_box_and_no_review() -> None:
    out = consolidate([[A], [shifted(A, 2, 1)]])
    assert not out.needs_review and out.reason == ""
    assert out.boxes == (Box(0, 11, 10.5, 40, 20),)
    assert 0.9 < out.agreement <= 1.0 and out.confidences == (out.agreement,)
    assert out.labelers == 2


def test_boxes_below_the_iou_threshold_are_two_objects_and_go_to_review() -> None:
    far = shifted(A, 20)  # IoU 0.33 < 0.5
    assert iou(A, far) < IOU_MATCH
    out = consolidate([[A], [far]])
    assert out.needs_review and len(out.boxes) == 2
    assert "2 of 2 boxes were not drawn by every labeler" in out.reason
    assert out.agreement == pytest.approx(0.5)


def test_a_missing_box_is_a_disagreement() -> None:
    other = Box(0, 100, 60, 10, 10)
    out = consolidate([[A, other], [A]])
    assert out.needs_review and "1 of 2 boxes" in out.reason
    assert sorted(out.confidences) == [0.5, 1.0]


def test_an_extra_box_is_a_disagreement() -> None:
    out = consolidate([[A], [A, Box(0, 80, 80, 5, 5)]])
    assert out.needs_review and len(out.boxes) == 2


def test_the_same_place_with_another_class_is_a_disagreement() -> None:
    out = consolidate([[A], [shifted(A, 0, class_id=1)]])
    assert out.needs_review and {b.class_id for b in out.boxes} == {0, 1}


def test_matched_but_loose_boxes_go_to_review_below_min_agreement() -> None:
    loose = Box(0, 10, 10, 40, 32)  # IoU 0.625: matched, but far from the same box
    out = consolidate([[A], [loose]], min_agreement=0.9)
    assert len(out.boxes) == 1 and out.needs_review
    assert "below 0.90" in out.reason
    assert not consolidate([[A], [loose]], min_agreement=0.5).needs_review


def test_three_labelers_each_box_matched_once() -> None:
    b = Box(0, 100, 50, 20, 20)
    out = consolidate([[A, b], [shifted(b, 1), shifted(A, 1)], [shifted(A, -1), shifted(b, -1)]])
    assert not out.needs_review and len(out.boxes) == 2
    assert sorted((round(x.left, 6), round(x.top, 6)) for x in out.boxes) == [(10.0, 10.0), (100.0, 50.0)]


def test_three_labelers_where_one_misses_a_box() -> None:
    b = Box(0, 100, 50, 20, 20)
    out = consolidate([[A, b], [A, b], [A]])
    assert out.needs_review and "1 of 2 boxes" in out.reason
    # drawn by 2 of 3: its confidence is two thirds
    assert sorted(out.confidences) == [pytest.approx(0.6667, abs=1e-4), 1.0]


def test_nobody_drew_a_box_is_full_agreement() -> None:
    out = consolidate([[], [], []])
    assert out.boxes == () and out.agreement == 1.0 and not out.needs_review


def test_one_labeler_is_final() -> None:
    out = consolidate([[A]])
    assert not out.needs_review and out.boxes == (A,) and out.agreement == 1.0


def test_no_answer_is_an_error() -> None:
    with pytest.raises(ValueError, match="no answer"):
        consolidate([])
