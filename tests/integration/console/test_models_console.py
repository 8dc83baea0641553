"""The Models and Fleet pages in headless Chromium, with two real local Greengrass core devices: Approve on the
Models page calls UpdateModelPackage, the edge deployment workflow rolls the package out and the Fleet page shows
both devices serving it; Reject of the serving package rolls the fleet back to the previous approved one. Once a
model that finds a box is deployed, the Labeling page pre-fills a task with its box (model-assisted labeling). The
Fleet page shows each device's latest results: an uncertain frame, which the device uploads to the raw bucket,
with its boxes over the real image; a confident one, whose pixels never leave the device, says so."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.console import call, drop_frame, fetch, finished, pending_task, upload_and_request_labels
from support.deploy_packages import register_package
from support.edge_helpers import brightness_for, build_graph, default_table, grey_png
from support.fixture_models import box_detector
from support.waiting import wait_until

from loupe.ledger import Ledger

pytestmark = pytest.mark.integration

ROLLOUT = 240_000  # ms: a deployment to two local devices, with the workflow's waits (a busy CI machine)


@pytest.fixture(scope="module")
def fleet(local_aws: Any) -> Iterator[list[str]]:
    """Two devices of our own in the fleet's thing group; the group's other (earlier tests') members step out
    for this module so that the rollouts target running devices only."""
    from loupe_local.devices import DeviceFleet

    iot = local_aws.client("iot")
    group = local_aws.physical("FleetThingGroup")
    others = iot.list_things_in_thing_group(thingGroupName=group)["things"]
    for thing in others:
        iot.remove_thing_from_thing_group(thingGroupName=group, thingName=thing)
    devices = DeviceFleet.from_runtime(
        local_aws, poll_seconds=0.5, settle_seconds=1.5, ack_seconds=8.0, prefix=f"console-{uuid.uuid4().hex[:4]}"
    )
    devices.publish_components(local_aws.physical("ArtifactBucket"))
    names = devices.start(2)
    try:
        devices.wait_registered(names)
        yield names
    finally:
        devices.stop()
        for thing in names:
            iot.remove_thing_from_thing_group(thingGroupName=group, thingName=thing)
        for thing in others:
            iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)


def package_version(package: dict[str, Any]) -> str:
    return package["arn"].rsplit("/", 1)[-1]


def click_action(page: Any, console: str, package: dict[str, Any], action: str) -> None:
    from playwright.sync_api import expect

    version = package_version(package)
    page.goto(f"{console}/models")
    row = page.locator(f'#packages tr[data-version="{version}"]')
    row.locator(f'button[data-action="{action}"]').click()
    status = "Approved" if action == "approve" else "Rejected"
    expect(page.locator("#msg")).to_contain_text(f"model package {version} {status}")
    expect(row.locator("[data-approval]")).to_have_text(status)


def expect_serving(page: Any, console: str, things: list[str], model_version: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{console}/fleet")
    for thing in things:
        expect(page.locator(f'#devices tr[data-thing="{thing}"] .serving')).to_have_text(model_version, timeout=ROLLOUT)


def test_approve_then_reject_switches_the_devices_and_rolls_back(
    local_aws: Any, console: str, page: Any, fleet: list[str]
) -> None:
    from playwright.sync_api import expect

    a = register_package(local_aws, model_version=f"console-A-{uuid.uuid4().hex[:6]}")
    b = register_package(local_aws, model_version=f"console-B-{uuid.uuid4().hex[:6]}")

    click_action(page, console, a, "approve")
    expect_serving(page, console, fleet, a["model_version"])

    click_action(page, console, b, "approve")
    expect_serving(page, console, fleet, b["model_version"])
    rollout = f'#deployments tr[data-model="{package_version(b)}"][data-outcome="COMPLETED"]'
    expect(page.locator(rollout)).to_contain_text(", ".join(f"{t}: COMPLETED" for t in fleet), timeout=ROLLOUT)

    click_action(page, console, b, "reject")
    expect_serving(page, console, fleet, a["model_version"])

    # the page refuses what the registry would not change, with a message
    status, body = call("POST", f"{console}/api/models/{package_version(b)}/reject", {})
    assert status == 409 and "already Rejected" in body["error"], body
    # and writes that are not same-origin JSON (a form or a script on another site)
    form = call("POST", f"{console}/api/models/{package_version(b)}/approve", raw=b"x=1", content_type="text/plain")
    assert form[0] == 415 and "JSON" in form[1]["error"]
    cross = call("POST", f"{console}/api/models/{package_version(b)}/approve", {}, origin="http://evil.example")
    assert cross[0] == 403 and "cross-origin" in cross[1]["error"]
    page.goto(f"{console}/models")  # nothing changed
    expect(page.locator(f'#packages tr[data-version="{package_version(b)}"] [data-approval]')).to_have_text("Rejected")


def test_the_labeling_page_is_prefilled_with_the_deployed_models_boxes(
    local_aws: Any, console: str, page: Any, fleet: list[str], manual_workforce: None, ledger: Ledger
) -> None:
    from playwright.sync_api import expect

    version = f"console-box-{uuid.uuid4().hex[:6]}"
    package = register_package(local_aws, onnx_bytes=box_detector(), model_version=version)
    click_action(page, console, package, "approve")
    expect_serving(page, console, fleet, package["model_version"])

    sha, started = upload_and_request_labels(local_aws, ledger)
    assert wait_until(lambda: pending_task(console, sha), 60), "the labeling job's task never reached the queue"
    page.goto(f"{console}/labeling")
    page.locator("#queue li", has_text=sha[:12]).click()
    expect(page.locator("#assist")).to_contain_text(f"deployed model {package_version(package)}")
    predicted = page.locator("#canvas rect.box.predicted")
    expect(predicted).to_have_count(1)
    shown = [float(predicted.get_attribute(a)) for a in ("x", "y", "width", "height")]
    assert all(abs(a - b) <= 1 for a, b in zip(shown, (50, 40, 60, 40), strict=True)), shown
    page.keyboard.press("Enter")  # the person accepts the pre-annotation as it is
    expect(page.locator("#msg")).to_contain_text("submitted")
    done = finished(local_aws, started["execution_arn"])
    assert done["status"] == "SUCCEEDED", done.get("cause")
    (box,) = json.loads(ledger.get(sha)["annotations"])
    assert [box["left"], box["top"], box["width"], box["height"]] == [round(v) for v in shown]


def test_the_fleet_page_shows_uploaded_uncertain_frames_over_their_pixels(
    local_aws: Any, console: str, page: Any, fleet: list[str]
) -> None:
    """The deployed test model finds one box whose confidence is the frame's brightness (support.edge_helpers): a
    white frame gives 0.86 (confident: the device keeps the pixels), a grey one 0.45, inside the feedback band
    (uncertain: the device uploads the frame to raw/feedback/<thing>/ and announces it)."""
    from playwright.sync_api import expect

    table = default_table(32)
    table[4, 1:] = 0.0  # only the brightness-driven candidate
    version = f"console-grey-{uuid.uuid4().hex[:6]}"
    package = register_package(local_aws, onnx_bytes=build_graph(table, 32), model_version=version)
    click_action(page, console, package, "approve")
    expect_serving(page, console, fleet, version)

    thing = fleet[0]
    confident = grey_png(255, 160, 120)
    uncertain = grey_png(brightness_for(0.45, 32, 160, 120), 160, 120)
    frames = page.locator(f'#frames section[data-thing="{thing}"]')
    drop_frame(local_aws.state_dir, thing, f"confident-{version}.png", confident)
    kept = frames.locator('figure[data-pixels="none"]', has_text=f"confident-{version}.png")
    expect(kept.locator("[data-missing]")).to_have_text(
        "image not sent by the device (only uncertain frames are uploaded)", timeout=60_000
    )
    expect(kept.locator("img")).to_have_count(0)
    expect(kept.locator(".box-list")).to_contain_text("scratch 0.86")

    drop_frame(local_aws.state_dir, thing, f"uncertain-{version}.png", uncertain)
    sent = frames.locator('figure[data-pixels="s3"]', has_text=f"uncertain-{version}.png")
    img = sent.locator("img")
    expect(img).to_have_count(1, timeout=60_000)
    page.wait_for_function("img => img.complete && img.naturalWidth === 160", arg=img.element_handle())
    status, content_type, body = fetch(f"{console}{img.get_attribute('src')}")
    assert status == 200 and content_type == "image/png" and body == uncertain, (status, content_type, len(body))
    key = sent.locator("[data-key]").get_attribute("data-key")
    frame_id = sent.get_attribute("data-frame")
    assert key == f"raw/feedback/{thing}/{frame_id}.png", key
    stored = local_aws.client("s3").get_object(Bucket=local_aws.physical("RawBucket"), Key=key)["Body"].read()
    assert stored == uncertain
    box = sent.locator('.shot rect[data-kind="result"]')
    expect(box).to_have_count(1)  # drawn over the image, where the device found it
    drawn = [float(box.get_attribute(a)) for a in ("x", "y", "width", "height")]
    assert all(abs(a - b) <= 1 for a, b in zip(drawn, (32, 12, 32, 32), strict=True)), drawn
    expect(sent.locator(".shot text.label")).to_have_text("scratch 0.45")
    # a frame the device did not upload has no image to serve
    assert fetch(f"{console}/api/fleet/{thing}/frames/{kept.get_attribute('data-frame')}/image")[0] == 404
