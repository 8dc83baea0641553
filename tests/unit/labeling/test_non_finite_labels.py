"""NaN and Infinity in labels are refused with a reason, never stored and never a crash: Python's json reads the
``NaN``/``Infinity`` literals (and ``1e999`` as infinity), and NaN passes every bound check. Covered: the Box every
label becomes, a Ground Truth output manifest line (the line fails with its reason, the others are kept), a person's
answer in the manual workforce, and the same answer posted to the local console (400 with the message, not 500)."""

from __future__ import annotations

import json
import math
import time

import pytest

from loupe import manifests
from loupe.datasets import Box, DatasetError
from loupe_local.standins.groundtruth.service import GroundTruth
from loupe_local.standins.groundtruth.task_queue import AnswerError, check_boxes

CLASSES = {"0": "scratch"}
ATTRIBUTE = "defects"
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_box_is_never_built_with_a_non_finite_coordinate(value: float) -> None:
    for field in ("left", "top", "width", "height"):
        coords = {"left": 1.0, "top": 1.0, "width": 5.0, "height": 5.0, field: value}
        with pytest.raises(DatasetError, match="finite"):
            Box(0, **coords)
    with pytest.raises(DatasetError, match="malformed box"):
        Box.from_dict({"class_id": value, "left": 1, "top": 1, "width": 5, "height": 5})


def line(source: str, annotation: str = '{"class_id": 0, "left": 1, "top": 2, "width": 10, "height": 8}',
         size: str = '{"width": 64, "height": 48, "depth": 3}', confidence: str = "0.9") -> str:  # fmt: skip
    return (
        f'{{"source-ref": "s3://b/{source}", "{ATTRIBUTE}": {{"image_size": [{size}], "annotations": [{annotation}]}},'
        f' "{ATTRIBUTE}-metadata": {{"objects": [{{"confidence": {confidence}}}], "class-map": {{"0": "scratch"}},'
        f' "type": "groundtruth/object-detection", "human-annotated": "yes", "job-name": "labeling-job/j"}}}}'
    )


@pytest.mark.parametrize("literal", NON_FINITE)
def test_an_output_manifest_line_with_a_non_finite_number_fails_with_its_reason(literal: str) -> None:
    text = "\n".join(
        [
            line("good.jpg"),
            line("box.jpg", annotation=f'{{"class_id": 0, "left": {literal}, "top": 2, "width": 10, "height": 8}}'),
            line("size.jpg", size=f'{{"width": {literal}, "height": 48}}'),
            line("conf.jpg", confidence=literal),
        ]
    )
    labels, problems = manifests.parse_output_manifest(text, ATTRIBUTE)
    by_ref = {label.source_ref.rsplit("/", 1)[1]: label for label in labels}
    assert not by_ref["good.jpg"].failed and by_ref["good.jpg"].boxes == [Box(0, 1, 2, 10, 8)]
    assert "finite" in by_ref["box.jpg"].failure_reason or "malformed box" in by_ref["box.jpg"].failure_reason
    assert "bad image_size" in by_ref["size.jpg"].failure_reason
    assert "confidence" in by_ref["conf.jpg"].failure_reason
    assert len(problems) == 3


@pytest.mark.parametrize("literal", NON_FINITE)
def test_a_persons_answer_with_a_non_finite_coordinate_is_refused(literal: str) -> None:
    raw = json.loads(f'[{{"class_id": 0, "left": 1, "top": 1, "width": {literal}, "height": 5}}]')
    with pytest.raises(AnswerError, match="box 1 is not a box"):
        check_boxes(raw, 64, 48, CLASSES)


def _queue_with_one_task() -> GroundTruth:
    gt = GroundTruth()
    now = time.time()
    gt.tasks["job-1.0"] = {
        "id": "job-1.0",
        "job": "job-1",
        "kind": "label",
        "sha256": "ab" * 32,
        "width": 64,
        "height": 48,
        "class_map": CLASSES,
        "created": now,
        "expires": now + 60,
        "state": "pending",
    }
    return gt
