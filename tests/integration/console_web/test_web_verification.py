"""Verification in the browser (LabelingService=Loupe with EnableVerification=true: a copy of the web stack's labeling
state machine with that option): a labeler's boxes on two uploads come back to another person as verify tasks on
the Labeling page — the boxes shown read-only, Accept / Reject with a reason, the keys a and r. The accepted image
enters the new dataset version; the rejected one goes back to unlabeled with the reason.

The labeler answers through the API (the browser's labeling is test_web_console_flows.py's); the verifier signs in
once the verify tasks exist, so that the page is handed those."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.console_pages import invite, sign_in
from support.console_users import api, signed_in
from support.waiting import wait_for

from loupe.labeling.config import REJECT_REASONS
from loupe.labeling.trigger import new_claim_id
from loupe.ledger import Ledger

pytestmark = pytest.mark.integration

# two crops of the dataset (read in place) that no other browser test uploads, and the box the labeler gives each:
# the first one's scratch (labels.csv), and a box beside the second one's scratch
RIGHT = ("images/bad/image-2020-04-22-10-51-14-06-cropped-left-top.jpg", (158, 109, 217, 48))
WRONG = ("images/bad/image-2020-04-22-10-51-26-67-cropped-left-top.jpg", (20, 20, 40, 30))


def shot(page: Any) -> None:
    """``LOUPE_SCREENSHOTS=<folder>`` keeps a screenshot of the verify task (docs/images/console-verify.png)."""
    folder = os.environ.get("LOUPE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / "console-verify.png"))


def scratch(corners: tuple[int, int, int, int]) -> dict[str, Any]:
    left, top, width, height = corners
    return {"label": "scratch", "left": left, "top": top, "width": width, "height": height}


def upload(rt: Any, ledger: Ledger, photo: Path) -> str:
    data = photo.read_bytes()
    rt.client("s3").put_object(Bucket=rt.physical("RawBucket"), Key=f"raw/web-verify/{photo.name}", Body=data)
    sha = hashlib.sha256(data).hexdigest()
    wait_for(lambda: (ledger.get(sha) or {}).get("status") == "unlabeled", 30, f"{sha[:12]} unlabeled")
    return sha


def verifying_machine(rt: Any) -> str:
    """The deployed labeling state machine with EnableVerification=true (its Configure state as the parameter sets
    it); the web stack runs the default LabelingService=Loupe."""
    sfn = rt.client("stepfunctions")
    deployed = sfn.describe_state_machine(stateMachineArn=rt.arn("LabelingStateMachine"))
    definition = json.loads(deployed["definition"])
    configure = definition["States"]["Configure"]["Result"]
    assert (configure["service"], configure["verify"]) == ("Loupe", "false"), configure
    configure["verify"] = "true"
    return sfn.create_state_machine(
        name=f"web-verify-{uuid.uuid4().hex[:6]}", definition=json.dumps(definition), roleArn=deployed["roleArn"]
    )["stateMachineArn"]


def label_through_the_api(rt: Any, app_url: str, given: dict[str, dict[str, Any]], names: dict[str, str]) -> None:
    """A labeler boxes each upload as ``given`` (sha -> box) through the API; any other image handed out (another
    module's, still open) is declined."""
    labeler = signed_in(rt, "labelers")
    refs = {f"s3://{rt.physical('RawBucket')}/raw/web-verify/{names[sha]}": sha for sha in given}
    done: set[str] = set()

    def step() -> bool:
        status, _, body = api(f"{app_url}/labeling/tasks/next", token=labeler["id"])
        assert status == 200, body
        task = body["task"]
        if task is not None:
            path = f"{app_url}/labeling/tasks/{task['assignment_id']}"
            sha = refs.get(task["source_ref"])
            if sha is None:
                status, _, out = api(f"{path}/decline", "POST", labeler["id"], {})
            else:
                assert task["kind"] == "label", task
                status, _, out = api(path, "POST", labeler["id"], {"boxes": [given[sha]]})
                done.add(sha)
            assert status == 200, out
        return done == set(given)

    wait_for(step, 60, "the labeler's answers")


def blur(page: Any) -> None:
    """The keys go to the page, not to a field."""
    page.evaluate("document.activeElement && document.activeElement.blur()")


def test_a_verifier_accepts_one_labeled_image_and_rejects_the_other_with_a_reason(
    web_stack: Any, app_url: str, new_page: Callable[[], Any], metal_tags_dir: Path
) -> None:
    ledger = Ledger(web_stack.table("LedgerTable"))
    given, names = {}, {}
    for name, corners in (RIGHT, WRONG):
        sha = upload(web_stack, ledger, metal_tags_dir / name)
        given[sha], names[sha] = scratch(corners), Path(name).name
    accepted, rejected = list(given)
    sfn = web_stack.client("stepfunctions")
    claim = new_claim_id(list(given)) + "v"
    assert ledger.claim(list(given), claim) == list(given)
    arn = sfn.start_execution(
        stateMachineArn=verifying_machine(web_stack), input=json.dumps({"claim_id": claim, "images": list(given)})
    )["executionArn"]
    label_through_the_api(web_stack, app_url, given, names)

    def verifying() -> bool:
        history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        return any(e.get("stateEnteredEventDetails", {}).get("name") == "AppVerificationJob" for e in history)

    wait_for(verifying, 60, "the run's verification step")
    page = new_page()
    sign_in(page, app_url, *invite(web_stack, "labelers"))
    shown = []
    for _ in given:
        page.wait_for_selector("body[data-kind='verify']")
        assignment = page.evaluate("document.body.dataset.assignment")
        assert page.locator("#accept").is_visible() and page.locator("#reject").is_visible()
        assert not page.locator("#submit").is_visible() and not page.locator("#label-select").is_visible()
        page.wait_for_selector("#box-count[data-boxes='1']")
        rect = page.locator("#canvas rect.box")
        x, y, w, h = (round(float(rect.get_attribute(k) or "nan")) for k in ("x", "y", "width", "height"))
        sha = next(s for s, b in given.items() if (b["left"], b["top"], b["width"], b["height"]) == (x, y, w, h))
        shown.append(sha)
        # read-only: a drag across the image draws nothing
        area = page.locator("#canvas").bounding_box()
        page.mouse.move(area["x"] + 5, area["y"] + 5)
        page.mouse.down()
        page.mouse.move(area["x"] + area["width"] / 2, area["y"] + area["height"] / 2, steps=4)
        page.mouse.up()
        assert page.locator("#canvas rect.box").count() == 1
        blur(page)
        if sha == accepted:
            shot(page)
            page.keyboard.press("a")
        else:
            page.keyboard.press("r")  # no reason chosen yet: refused on the page, nothing sent
            page.wait_for_selector("#msg[data-kind='error']")
            assert "needs a reason" in page.locator("#msg").inner_text()
            assert page.evaluate("document.body.dataset.assignment") == assignment
            page.select_option("#reject-reason", REJECT_REASONS[1])
            blur(page)
            page.keyboard.press("r")
        page.wait_for_function("(a) => document.body.dataset.assignment !== a", arg=assignment)
    assert sorted(shown) == sorted(given)
    done = wait_for(
        lambda: (o := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and o, 120, "the run to end"
    )
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    assert out["collected"]["labeled"] == [accepted] and out["collected"]["rejected"] == 1
    version = out["dataset"]["version"]
    body = (
        web_stack.client("s3")
        .get_object(Bucket=web_stack.physical("ArtifactBucket"), Key=f"datasets/v{version}/dataset.json")["Body"]
        .read()
    )
    in_version = {image["sha256"] for image in json.loads(body)["images"]}
    assert accepted in in_version and rejected not in in_version
    assert ledger.get(accepted)["verification"] == "Label correct"
    back = ledger.get(rejected)
    assert back["status"] == "unlabeled" and REJECT_REASONS[1] in back["last_failure"]
