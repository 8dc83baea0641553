"""The Labeling page with the manual workforce, in headless Chromium against the session's local AWS: an
unlabeled upload becomes a pending task, a person draws a box, the labeling workflow (real ASL, real handlers, the
Ground Truth stand-in's output manifest) writes a new dataset version, and the Loop page shows it. Bad answers
(an empty box, a box outside the image, a double submit, a stale task) are refused with a message and lose nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.console import WIDTH, call, finished, pending_task, upload_and_request_labels
from support.waiting import wait_until

from loupe.ledger import Ledger

pytestmark = pytest.mark.integration


def test_drawing_a_box_labels_the_image_and_makes_a_dataset_version(
    local_aws: Any, console: str, page: Any, manual_workforce: None, ledger: Ledger
) -> None:
    from playwright.sync_api import expect

    sha, started = upload_and_request_labels(local_aws, ledger)
    assert wait_until(lambda: pending_task(console, sha), 60), "the labeling job's task never reached the queue"
    page.goto(f"{console}/labeling")
    item = page.locator("#queue li", has_text=sha[:12])
    item.click()
    task_id = item.get_attribute("data-task")
    expect(page.locator("#assist")).not_to_have_text("")  # model-assisted pre-annotation settled, whatever it was
    page.click("#clear-boxes")
    canvas = page.locator("#canvas")
    bounds = canvas.bounding_box()
    scale = bounds["width"] / WIDTH

    def at(x: float, y: float) -> tuple[float, float]:
        return bounds["x"] + x * scale, bounds["y"] + y * scale

    # a click without a drag is an empty box: refused with a message, nothing drawn
    page.mouse.click(*at(20, 20))
    expect(page.locator("#msg")).to_contain_text("empty")
    expect(page.locator("#canvas rect.box")).to_have_count(0)
    bounds = canvas.bounding_box()
    # draw a box from (30, 20) to (90, 60) in image pixels
    page.mouse.move(*at(30, 20))
    page.mouse.down()
    page.mouse.move(*at(60, 40), steps=4)
    page.mouse.move(*at(90, 60), steps=4)
    page.mouse.up()
    expect(page.locator("#canvas rect.box")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(page.locator("#msg")).to_contain_text(f"task {task_id} submitted")

    # submitting the same task again is refused; the first answer is kept
    status, body = call("POST", f"{console}/api/tasks/{task_id}", {"boxes": []})
    assert status == 409 and "already submitted" in body["error"]

    done = finished(local_aws, started["execution_arn"])
    assert done["status"] == "SUCCEEDED", done.get("cause")
    entry = ledger.get(sha)
    assert entry["status"] == "labeled"
    (box,) = json.loads(entry["annotations"])
    assert box["class_id"] == 0
    drawn = (box["left"], box["top"], box["width"], box["height"])
    assert all(abs(a - b) <= 1 for a, b in zip(drawn, (30, 20, 60, 40), strict=True)), drawn
    dataset = json.loads(done["output"])["dataset"]
    version = dataset["version"]

    page.goto(f"{console}/loop")
    row = page.locator(f'#datasets tr[data-version="{version}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text(f"v{dataset['parent']}" if dataset["parent"] is not None else "–")
    expect(page.locator('#ledger tr[data-status="labeled"] .count')).not_to_have_text("0")


def test_bad_answers_are_refused_and_a_stopped_job_leaves_a_stale_task(
    local_aws: Any, console: str, page: Any, manual_workforce: None, ledger: Ledger
) -> None:
    from playwright.sync_api import expect

    sha, started = upload_and_request_labels(local_aws, ledger)
    task = wait_until(lambda: pending_task(console, sha), 60)
    assert task, "the labeling job's task never reached the queue"
    url = f"{console}/api/tasks/{task['id']}"
    refused = {
        "empty box": ({"boxes": [{"class_id": 0, "left": 10, "top": 10, "width": 0, "height": 12}]}, "is empty"),
        "outside": ({"boxes": [{"class_id": 0, "left": 150, "top": 10, "width": 30, "height": 12}]}, "goes outside"),
        "negative": ({"boxes": [{"class_id": 0, "left": -5, "top": 10, "width": 30, "height": 12}]}, "goes outside"),
        "class": ({"boxes": [{"class_id": 7, "left": 10, "top": 10, "width": 30, "height": 12}]}, "not one of"),
        "not boxes": ({"boxes": "scratch"}, "list of boxes"),
    }
    for what, (answer, message) in refused.items():
        status, body = call("POST", url, answer)
        assert status == 400 and message in body["error"], (what, status, body)
    status, body = call("POST", url, raw=b"{not json")
    assert status == 400 and "JSON" in body["error"]
    assert pending_task(console, sha), "a refused answer took the task out of the queue"

    page.goto(f"{console}/labeling")
    page.locator("#queue li", has_text=sha[:12]).click()
    local_aws.client("sagemaker").stop_labeling_job(LabelingJobName=task["job"])
    expect(page.locator("#msg")).to_contain_text("left the queue")
    status, body = call("POST", url, {"boxes": []})
    assert status == 409 and "stale" in body["error"], body
    done = finished(local_aws, started["execution_arn"])
    assert done["status"] == "FAILED"
    # nothing lost: the image is back in the pool for the next labeling run
    assert wait_until(lambda: ledger.get(sha)["status"] == "unlabeled", 30), ledger.get(sha)
