"""The manual workforce's answers: what the labeling UI accepts and refuses, and the task's states (a refused
answer leaves the task pending; a second answer or one to a stale task is refused and the first one kept)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from loupe.datasets import Box
from loupe_local.standins.groundtruth.service import GroundTruth
from loupe_local.standins.groundtruth.task_queue import AnswerError, check_boxes
from loupe_local.standins.groundtruth.workforce import Workforce, set_workforce_mode

CLASSES = {"0": "scratch", "1": "dent"}


def box(**kw: float) -> dict[str, float]:
    return {"class_id": 0, "left": 10, "top": 10, "width": 20, "height": 15, **kw}


def test_boxes_inside_the_image_are_kept_in_whole_pixels() -> None:
    out = check_boxes(
        [box(left=10.4, width=19.6), box(class_id=1, left=0, top=0, width=64, height=48)], 64, 48, CLASSES
    )
    assert out == [Box(0, 10, 10, 20, 15), Box(1, 0, 0, 64, 48)]
    assert check_boxes([], 64, 48, CLASSES) == []  # labeled: no defect


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([box(width=0)], "box 1 is empty"),
        ([box(), box(height=0.2)], "box 2 is empty"),
        ([box(left=50)], "goes outside the 64 x 48 image"),
        ([box(top=-3)], "goes outside"),
        ([box(class_id=5)], "not one of the job's classes"),
        ([{"left": 1}], "box 1 is not a box"),
        ("scratch", "list of boxes"),
    ],
)
def test_bad_boxes_are_refused_with_a_message(answer: object, message: str) -> None:
    with pytest.raises(AnswerError, match=message):
        check_boxes(answer, 64, 48, CLASSES)


def _queue_with_one_task(kind: str = "label") -> GroundTruth:
    gt = GroundTruth()
    now = time.time()
    gt.tasks["job-1.0"] = {
        "id": "job-1.0",
        "job": "job-1",
        "kind": kind,
        "sha256": "ab" * 32,
        "width": 64,
        "height": 48,
        "class_map": CLASSES,
        "created": now,
        "expires": now + 60,
        "state": "pending",
        "verdicts": ["correct", "missing", "wrong"],
        "_image": b"jpeg",
        "_mime": "image/jpeg",
    }
    return gt


def test_a_refused_answer_leaves_the_task_pending_and_a_second_answer_is_refused() -> None:
    gt = _queue_with_one_task()
    with pytest.raises(AnswerError, match="is empty") as refused:
        gt.submit("job-1.0", {"boxes": [box(width=0)]})
    assert refused.value.status == 400
    assert [t["id"] for t in gt.pending_tasks()] == ["job-1.0"]
    assert "_image" not in gt.pending_tasks()[0]  # the queue shows no private fields
    assert gt.submit("job-1.0", {"boxes": [box()]})["state"] == "answered"
    assert gt.pending_tasks() == []
    with pytest.raises(AnswerError, match="already submitted") as again:
        gt.submit("job-1.0", {"boxes": []})
    assert again.value.status == 409
    assert gt.tasks["job-1.0"]["_answer"] == [Box(0, 10, 10, 20, 15)]


def test_stale_and_unknown_tasks_are_refused() -> None:
    gt = _queue_with_one_task()
    gt.tasks["job-1.0"]["state"] = "withdrawn"
    with pytest.raises(AnswerError, match="stale: its labeling job was stopped") as stale:
        gt.submit("job-1.0", {"boxes": []})
    assert stale.value.status == 409
    with pytest.raises(AnswerError, match="no task job-9.0") as unknown:
        gt.submit("job-9.0", {"boxes": []})
    assert unknown.value.status == 404


def test_a_verification_task_takes_one_of_its_verdicts() -> None:
    gt = _queue_with_one_task("verify")
    with pytest.raises(AnswerError, match="must be one of"):
        gt.submit("job-1.0", {"verdict": "maybe"})
    assert gt.submit("job-1.0", {"verdict": "missing"})["state"] == "answered"


def test_the_mode_is_a_workforce_setting_that_keeps_the_others(tmp_path: Path) -> None:
    (tmp_path / "workforce").mkdir()
    (tmp_path / "workforce" / "config.json").write_text(json.dumps({"noise_rate": 0.1}))
    assert Workforce(tmp_path / "workforce").mode == "auto"
    set_workforce_mode(tmp_path, "manual")
    workforce = Workforce(tmp_path / "workforce")
    assert (workforce.mode, workforce.noise_rate) == ("manual", 0.1)
    with pytest.raises(ValueError, match="auto or manual"):
        set_workforce_mode(tmp_path, "crowd")
