"""The console web app in Chromium on a local stack with the default labeling parameters: people invited with
``loupe labelers add`` sign in with Cognito's SRP flow (amazon-cognito-identity-js), choose their password, label an
upload by drawing a box with the mouse, resolve a disagreement as a reviewer, and cannot approve a model unless they
are approvers (the page hides the buttons; the API answers 403 to a forced call).

Set ``LOUPE_SCREENSHOTS=<folder>`` to keep screenshots of the signed-in pages (docs/images/console-*.png)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.console_pages import invite, sign_in
from support.deploy_packages import register_package
from support.waiting import wait_for

from loupe.ledger import Ledger

pytestmark = pytest.mark.integration

W, H = 450, 300  # the metal-tags crops
LABELED = "images/bad/image-2020-04-22-11-07-29-26-cropped-left-top.jpg"  # a scratch at left 81, top 123, 82×97
REVIEWED = "images/bad/image-2020-04-22-10-55-52-04-cropped-left-bottom.jpg"  # a scratch at left 182, top 85, 76×142


def shot(page: Any, name: str) -> None:
    folder = os.environ.get("LOUPE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"console-{name}.png"))


def upload(rt: Any, ledger: Ledger, photo: Path) -> str:
    """One of the dataset's photos (read in place) uploaded as a new image; its hash once ingest listed it."""
    data = photo.read_bytes()
    rt.client("s3").put_object(Bucket=rt.physical("RawBucket"), Key=f"raw/web/{photo.name}", Body=data)
    sha = hashlib.sha256(data).hexdigest()
    wait_for(lambda: (ledger.get(sha) or {}).get("status") == "unlabeled", 30, f"{sha[:12]} unlabeled")
    return sha


def run_labeling(rt: Any, hashes: list[str], machine: str | None = None) -> str:
    """A labeling run of these uploads (the trigger's manual reason, or a copy of the state machine); its ARN."""
    sfn = rt.client("stepfunctions")
    machine = machine or rt.arn("LabelingStateMachine")
    before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]}
    if machine == rt.arn("LabelingStateMachine"):
        rt.invoke("LabelingTriggerFunction", {"reason": "manual", "sha256": hashes})
    else:
        from loupe.labeling.trigger import new_claim_id

        ledger = Ledger(rt.table("LedgerTable"))
        claim = new_claim_id(hashes) + "w"
        assert ledger.claim(hashes, claim) == hashes
        sfn.start_execution(stateMachineArn=machine, input=json.dumps({"claim_id": claim, "images": hashes}))

    def started() -> str | None:
        new = [e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]]
        return next((arn for arn in new if arn not in before), None)

    return wait_for(started, 30, "the labeling run to start")


def finished(rt: Any, arn: str, timeout: float = 120) -> dict[str, Any]:
    sfn = rt.client("stepfunctions")

    def done() -> dict[str, Any] | None:
        out = sfn.describe_execution(executionArn=arn)
        return out if out["status"] != "RUNNING" else None

    return wait_for(done, timeout, "the labeling run to end")


def draw(page: Any, x0: float, y0: float, x1: float, y1: float) -> None:
    """Drag across the image with the mouse, in image pixels."""
    page.wait_for_function("() => document.querySelector('#canvas image') !== null")
    box = page.locator("#canvas").bounding_box()
    sx, sy = box["width"] / W, box["height"] / H
    page.mouse.move(box["x"] + x0 * sx, box["y"] + y0 * sy)
    page.mouse.down()
    page.mouse.move(box["x"] + (x0 + x1) / 2 * sx, box["y"] + (y0 + y1) / 2 * sy, steps=4)
    page.mouse.move(box["x"] + x1 * sx, box["y"] + y1 * sy, steps=4)
    page.mouse.up()


def dataset_images(rt: Any, version: int) -> set[str]:
    s3 = rt.client("s3")
    body = s3.get_object(Bucket=rt.physical("ArtifactBucket"), Key=f"datasets/v{version}/dataset.json")["Body"].read()
    return {image["sha256"] for image in json.loads(body)["images"]}


@pytest.fixture(scope="module")
def ledger(web_stack: Any) -> Ledger:
    return Ledger(web_stack.table("LedgerTable"))


def test_an_invited_labeler_signs_in_and_labels_an_upload_into_a_new_dataset_version(
    web_stack: Any, app_url: str, ledger: Ledger, new_page: Callable[[], Any], metal_tags_dir: Path
) -> None:
    email, temporary = invite(web_stack, "labelers")
    sha = upload(web_stack, ledger, metal_tags_dir / LABELED)
    arn = run_labeling(web_stack, [sha])
    page = new_page()
    sign_in(page, app_url, email, temporary)
    assert page.locator("header .who").inner_text().startswith(email)
    # nothing of the session outside sessionStorage
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    page.wait_for_selector("body[data-assignment]")
    draw(page, 81, 123, 163, 220)
    page.wait_for_selector("#box-count[data-boxes='1']")
    shot(page, "labeling")
    page.click("#submit")
    page.wait_for_selector("#msg[data-kind='ok']")
    done = finished(web_stack, arn)
    assert done["status"] == "SUCCEEDED", done
    version = json.loads(done["output"])["dataset"]["version"]
    assert sha in dataset_images(web_stack, version)
    boxes = json.loads(ledger.get(sha)["annotations"])
    assert len(boxes) == 1
    box = boxes[0]
    # the box the mouse drew, in the image's pixels (the editor's rounding: within a pixel or two)
    assert abs(box["left"] - 81) <= 2 and abs(box["top"] - 123) <= 2, box
    assert abs(box["width"] - 82) <= 3 and abs(box["height"] - 97) <= 3, box


def test_a_wrong_password_is_refused_with_cognitos_message(
    web_stack: Any, app_url: str, new_page: Callable[[], Any]
) -> None:
    page = new_page()
    page.goto(f"{app_url}/web/signin.html")
    page.fill("#email", f"nobody-{uuid.uuid4().hex[:6]}@example.com")
    page.fill("#password", "Not-the-password-1")
    page.click("#signin-submit")
    page.wait_for_selector("#msg[data-kind='error']")
    assert page.url.endswith("/web/signin.html")
    assert page.evaluate("sessionStorage.length") == 0


def test_a_page_without_a_session_sends_the_person_to_sign_in(app_url: str, new_page: Callable[[], Any]) -> None:
    page = new_page()
    page.goto(f"{app_url}/web/models.html")
    page.wait_for_url(re.compile(r"/web/signin\.html\?next=%2Fweb%2Fmodels\.html$"))


def test_a_labeler_sees_no_approval_buttons_and_a_forced_approval_is_403(
    web_stack: Any, app_url: str, new_page: Callable[[], Any]
) -> None:
    package = register_package(web_stack)
    version = package["arn"].rsplit("/", 1)[-1]
    email, temporary = invite(web_stack, "labelers")
    page = new_page()
    sign_in(page, app_url, email, temporary)
    page.goto(f"{app_url}/web/models.html")
    page.wait_for_selector(f"#packages tr[data-version='{version}']")
    page.click(f"#packages tr[data-version='{version}']")
    page.wait_for_selector("#no-decision")
    assert page.locator("#approve").count() == 0 and page.locator("#reject").count() == 0
    forced = page.evaluate(
        """async (v) => {
            try { await Loupe.api("POST", `/models/${v}/approval`, {decision: "Approved"}); return null; }
            catch (err) { return {status: err.status, message: err.message}; }
        }""",
        version,
    )
    assert forced["status"] == 403 and "approvers" in forced["message"], forced
    described = web_stack.client("sagemaker").describe_model_package(ModelPackageName=package["arn"])
    assert described["ModelApprovalStatus"] == "PendingManualApproval"


def two_labeler_machine(rt: Any) -> str:
    """The deployed labeling state machine with LabelersPerImage=2 (its Configure state as the parameter sets it)."""
    sfn = rt.client("stepfunctions")
    deployed = sfn.describe_state_machine(stateMachineArn=rt.arn("LabelingStateMachine"))
    definition = json.loads(deployed["definition"])
    configure = definition["States"]["Configure"]["Result"]
    assert configure["service"] == "Loupe" and configure["labelers_per_image"] == "1", configure
    configure["labelers_per_image"] = "2"
    return sfn.create_state_machine(
        name=f"web-labeling-2-{uuid.uuid4().hex[:6]}", definition=json.dumps(definition), roleArn=deployed["roleArn"]
    )["stateMachineArn"]


def test_two_labelers_disagree_and_a_reviewer_resolves_it_in_the_browser(
    web_stack: Any, app_url: str, ledger: Ledger, new_page: Callable[[], Any], metal_tags_dir: Path
) -> None:
    sha = upload(web_stack, ledger, metal_tags_dir / REVIEWED)
    arn = run_labeling(web_stack, [sha], two_labeler_machine(web_stack))
    drawn = [(182, 85, 258, 227), (330, 30, 420, 100)]  # far apart: no IoU match, the image goes to review
    for corners in drawn:
        page = new_page()
        sign_in(page, app_url, *invite(web_stack, "labelers"))
        page.wait_for_selector("body[data-assignment]")
        draw(page, *corners)
        page.wait_for_selector("#box-count[data-boxes='1']")
        page.click("#submit")
        page.wait_for_selector("#msg[data-kind='ok']")
    reviewer = new_page()
    sign_in(reviewer, app_url, *invite(web_stack, "reviewers"))
    reviewer.goto(f"{app_url}/web/review.html")
    reviewer.wait_for_selector("body[data-item]")
    assert reviewer.locator("#answers li[data-answer]").count() == 3  # the suggestion and each labeler's answer
    assert reviewer.locator("#canvas rect.other").count() == 2  # both labelers' boxes drawn
    # the reviewer takes the first listed labeler's box and moves it 10 px left with the keyboard
    reviewer.click("button[data-use='0']")
    reviewer.wait_for_selector("#box-count[data-boxes='1']")
    picked = reviewer.locator("#canvas rect.box:not(.other)").first
    taken = (float(picked.get_attribute("x")), float(picked.get_attribute("y")))
    chosen = next(c for c in drawn if abs(c[0] - taken[0]) <= 2 and abs(c[1] - taken[1]) <= 2)
    picked.click()
    reviewer.keyboard.press("Shift+ArrowLeft")
    shot(reviewer, "review")
    reviewer.click("#submit")
    reviewer.wait_for_selector("#msg[data-kind='ok']")
    done = finished(web_stack, arn)
    assert done["status"] == "SUCCEEDED", done
    assert sha in dataset_images(web_stack, json.loads(done["output"])["dataset"]["version"])
    (box,) = json.loads(ledger.get(sha)["annotations"])
    assert abs(box["left"] - (chosen[0] - 10)) <= 3 and abs(box["top"] - chosen[1]) <= 2, (box, chosen)


def evaluation_output(rt: Any, photo: Path) -> str:
    """What the pipeline's evaluation step leaves in the artifact bucket (one sample frame and its boxes, plus an
    entry pointing outside samples/ that must never be presigned); its folder's URI."""
    bucket = rt.physical("ArtifactBucket")
    prefix = f"loupe-training/web-{uuid.uuid4().hex[:8]}/Evaluate/output/evaluation"
    details = {
        "samples": [
            {
                "image": f"samples/{photo.name}",
                "width": W,
                "height": H,
                "truth": [[81, 123, 163, 220]],
                "predictions": [{"box": [78, 120, 166, 224], "conf": 0.91}],
                "champion_predictions": [],
            },
            {"image": "../../../raw/web/anything.jpg", "width": W, "height": H, "truth": [], "predictions": []},
        ]
    }
    s3 = rt.client("s3")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/details.json", Body=json.dumps(details).encode())
    s3.put_object(Bucket=bucket, Key=f"{prefix}/samples/{photo.name}", Body=photo.read_bytes())
    return f"s3://{bucket}/{prefix}"


def test_an_approver_approves_in_the_browser_and_the_package_names_them(
    web_stack: Any, app_url: str, new_page: Callable[[], Any], metal_tags_dir: Path
) -> None:
    gate = {
        "test_map50": "0.812",
        "test_map50_ci90": "0.774-0.846",
        "champion_map50": "0.768",
        "champion_bar": "0.758",
        "gate_reason": "passed: above the champion bar",
    }
    gate["evaluation_uri"] = evaluation_output(web_stack, metal_tags_dir / LABELED)
    package = register_package(web_stack, metadata=gate)
    version = package["arn"].rsplit("/", 1)[-1]
    email, temporary = invite(web_stack, "approvers")
    page = new_page()
    sign_in(page, app_url, email, temporary)
    page.goto(f"{app_url}/web/models.html")
    page.click(f"#packages tr[data-version='{version}']")
    page.wait_for_selector("#approve:not([disabled])")
    # the evaluation's sample frame, through its presigned URL, with its boxes; nothing outside samples/
    page.wait_for_selector("figure[data-sample] img")
    page.wait_for_function("() => document.querySelector('figure[data-sample] img').naturalWidth === 450")
    assert page.locator("figure[data-sample]").count() == 1
    assert page.locator("figure[data-sample] rect.truth").count() == 1
    assert page.locator("figure[data-sample] rect.predicted").count() == 1
    shot(page, "models")
    page.fill("#decision-reason", "checked in the browser")
    page.click("#approve")
    page.wait_for_selector("#msg[data-kind='ok']")
    described = web_stack.client("sagemaker").describe_model_package(ModelPackageName=package["arn"])
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == f"Approved by {email}: checked in the browser"
    page.wait_for_selector(f"#packages tr[data-version='{version}'] [data-approval='Approved']")


def test_sign_out_revokes_the_tokens_and_leaves_nothing_in_the_browser(
    web_stack: Any, app_url: str, new_page: Callable[[], Any]
) -> None:
    page = new_page()
    sign_in(page, app_url, *invite(web_stack, "labelers"))
    access = page.evaluate(
        "Object.keys(sessionStorage).filter(k => k.endsWith('.accessToken')).map(k => sessionStorage.getItem(k))[0]"
    )
    idp = web_stack.client("cognito-idp")
    assert idp.get_user(AccessToken=access)["Username"]
    page.click("#sign-out")
    page.wait_for_url(re.compile(r"/web/signin\.html\?signedout=1$"))
    assert page.evaluate("sessionStorage.length") == 0
    # GlobalSignOut: Cognito no longer accepts the access token
    with pytest.raises(ClientError) as revoked:
        idp.get_user(AccessToken=access)
    assert revoked.value.response["Error"]["Code"] == "NotAuthorizedException"
    page.goto(f"{app_url}/web/labeling.html")
    page.wait_for_url(re.compile(r"/web/signin\.html\?next="))


def test_a_refused_answer_is_shown_and_the_boxes_stay(
    web_stack: Any, app_url: str, ledger: Ledger, new_page: Callable[[], Any], metal_tags_dir: Path
) -> None:
    """The same labeler in two tabs holds one lease: the second tab's submit is refused (already answered), the page
    says so and keeps the boxes drawn there."""
    email, temporary = invite(web_stack, "labelers")
    sha = upload(web_stack, ledger, metal_tags_dir / "images/bad/image-2020-04-22-11-05-35-04-cropped-right-top.jpg")
    arn = run_labeling(web_stack, [sha])
    first = new_page()
    password = sign_in(first, app_url, email, temporary)
    first.wait_for_selector("body[data-assignment]")
    second = new_page()
    second.goto(f"{app_url}/web/signin.html?next=%2Fweb%2Flabeling.html")
    second.fill("#email", email)
    second.fill("#password", password)
    second.click("#signin-submit")
    second.wait_for_selector("body[data-assignment]")
    assert second.get_attribute("body", "data-assignment") == first.get_attribute("body", "data-assignment")
    draw(first, 125, 69, 176, 200)
    first.wait_for_selector("#box-count[data-boxes='1']")
    first.click("#submit")
    first.wait_for_selector("#msg[data-kind='ok']")
    draw(second, 284, 94, 319, 219)
    second.wait_for_selector("#box-count[data-boxes='1']")
    second.click("#submit")
    second.wait_for_selector("#msg[data-kind='error']")
    assert "already answered" in second.locator("#msg").inner_text()
    assert second.locator("#box-count").get_attribute("data-boxes") == "1"
    assert second.locator("#canvas rect.box").count() == 1
    assert finished(web_stack, arn)["status"] == "SUCCEEDED"
    (box,) = json.loads(ledger.get(sha)["annotations"])
    assert abs(box["left"] - 125) <= 2, box  # the first tab's answer, not the refused one
