"""The console app's Fleet and Loop pages in Chromium, against the local stack's console API, signed in as a Cognito
user of the stack's pool (its session where amazon-cognito-identity-js keeps one), under the Content-Security-Policy
the stack's static route sends with the pages."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.chromium import watched_page
from support.console_users import browser_session, session_init_script
from support.health_fleet import thing_in_fleet
from support.image_samples import jpeg
from support.stack_tables import stack_table
from support.waiting import wait_until

from loupe.deployment.store import DeploymentsStore
from loupe.ledger import Ledger

pytestmark = pytest.mark.integration


def shot(page: Any, name: str) -> None:
    """``LOUPE_SCREENSHOTS=<folder>`` keeps a screenshot of the page (docs/images/console-<name>.png)."""
    folder = os.environ.get("LOUPE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"console-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def viewer(local_aws: Any) -> dict[str, str]:
    return browser_session(local_aws, "labelers")


@pytest.fixture
def fleet_thing(local_aws: Any) -> Iterator[str]:
    with thing_in_fleet(local_aws, "loupe-device-fleetweb") as thing:
        yield thing


@pytest.fixture
def app_page(browser: Any, console: str, viewer: dict[str, str]) -> Iterator[Any]:
    """A signed-in page of the app as the stack's static route serves it (its own Content-Security-Policy); a test
    fails when the policy blocked anything the page loaded or ran, or a page threw."""
    with watched_page(browser, session_init_script(viewer)) as page:
        yield page


def test_the_fleet_page_shows_devices_and_draws_a_frames_boxes_over_it(
    app_page: Any, console: str, local_aws: Any, fleet_thing: str
) -> None:
    thing = fleet_thing
    DeploymentsStore(stack_table(local_aws, "DeploymentsTable")).record_serving(thing, "12")
    raw = local_aws.physical("RawBucket")
    key, odd = f"raw/feedback/{thing}/w-1.jpg", f"raw/feedback/{thing}/w-2.jpg"
    meta = {"device": thing, "model-version": "12", "max-confidence": "0.4400", "reason": "confidence-band"}
    s3 = local_aws.client("s3")
    s3.put_object(Bucket=raw, Key=key, Body=jpeg(80, 60), Metadata={**meta, "boxes": "[[0,0.44,8,6,40.5,30]]"})
    s3.put_object(Bucket=raw, Key=odd, Body=jpeg(80, 60, seed=1), Metadata={**meta, "boxes": "[[0,0.5,9,9,1,1]]"})

    app_page.goto(f"{console}/web/fleet.html")
    serving = app_page.locator(f'tr[data-thing="{thing}"] td.serving')
    serving.wait_for()
    assert serving.inner_text() == "12"
    # the frame's box, over the image the presigned URL loaded (the SVG is drawn once the image has loaded)
    rect = app_page.locator(f'figure[data-key="{key}"] svg rect.box')
    rect.wait_for()
    assert rect.get_attribute("data-box") == "8,6,40.5,30"
    assert app_page.locator(f'figure[data-key="{key}"] svg').get_attribute("viewBox") == "0 0 80 60"
    # boxes a device wrote badly: the frame is still shown, with why its boxes are not
    note = app_page.locator(f'figure[data-key="{odd}"] [data-note]')
    note.wait_for()
    assert "cannot be read" in note.inner_text()
    shot(app_page, "fleet")


def test_the_loop_page_shows_counts_datasets_and_labeling_runs(app_page: Any, console: str, local_aws: Any) -> None:
    ledger = Ledger(stack_table(local_aws, "LedgerTable"))
    job = f"loupe-fleetweb-{uuid.uuid4().hex[:6]}"
    ledger.put_job(job, claim_id="c-fleetweb", purpose="labeling", service="groundtruth", images=[])
    doc = {"version": 901, "parent": 900, "created": "2026-01-03T00:00:00+00:00", "counts": {"images": 3, "boxes": 2}}
    local_aws.client("s3").put_object(
        Bucket=local_aws.physical("ArtifactBucket"), Key="datasets/v901/dataset.json", Body=json.dumps(doc)
    )

    app_page.goto(f"{console}/web/loop.html")
    app_page.locator('tr[data-version="901"]').wait_for()
    app_page.locator(f'tr[data-job="{job}"]').wait_for()
    # the ledger's counts as the ledger has them (other tests' uploads may still land: the page polls)
    assert wait_until(
        lambda: (
            app_page.locator('tr[data-status="unlabeled"]').get_attribute("data-count")
            == str(ledger.count("unlabeled"))
        ),
        timeout=30,
    )
    shot(app_page, "loop")


def test_without_a_session_the_page_sends_the_person_to_sign_in(browser: Any, console: str, local_aws: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{console}/web/fleet.html")
        page.wait_for_url("**/web/signin.html?next=*", timeout=30_000)
    finally:
        context.close()
