"""Fixtures of the console browser tests: the session's local AWS serving its console, and headless Chromium
(Debian's ``chromium``, driven by Playwright) pointed at it."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

from loupe.ledger import Ledger
from loupe_local.standins.groundtruth import Workforce, set_workforce_mode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "ingest"))
import image_samples as samples  # noqa: E402

WIDTH, HEIGHT = 160, 120
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed: `apt-get install -y chromium` (make setup / .ci/run install it)")


@pytest.fixture(scope="module")
def console(local_aws: Any) -> Iterator[str]:
    """The console's URL; the session's local AWS serves it for this module."""
    url = local_aws.start_console()
    try:
        yield url.rstrip("/")
    finally:
        local_aws.console.stop()
        local_aws.console = None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def call(
    method: str,
    url: str,
    body: Any = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
    origin: str | None = None,
) -> tuple[int, Any]:
    """(HTTP status, JSON body) of a console API call, as the page (or another site's script) makes it."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": content_type, **({"Origin": origin} if origin else {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - the local console
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def manual_workforce(local_aws: Any) -> Iterator[None]:
    before = Workforce(Path(local_aws.state_dir) / "workforce").mode
    set_workforce_mode(local_aws.state_dir, "manual")
    try:
        yield
    finally:
        set_workforce_mode(local_aws.state_dir, before)


@pytest.fixture(scope="module")
def ledger(local_aws: Any) -> Ledger:
    import boto3

    dynamodb = boto3.resource("dynamodb", endpoint_url=local_aws.endpoint, region_name=local_aws.region)
    return Ledger(dynamodb.Table(local_aws.physical("LedgerTable")))


def upload_and_request_labels(rt: Any, ledger: Ledger) -> tuple[str, dict[str, Any]]:
    """An image of our own, uploaded to the raw bucket, ingested, then sent to labeling; (sha256, trigger output)."""
    data = samples.jpeg(WIDTH, HEIGHT, seed=uuid.uuid4().int % 100_000)
    key = f"raw/console/{uuid.uuid4().hex[:8]}.jpg"
    rt.client("s3").put_object(Bucket=rt.physical("RawBucket"), Key=key, Body=data)

    sha = hashlib.sha256(data).hexdigest()
    assert wait_until(lambda: (e := ledger.get(sha)) and e["status"] == "unlabeled", 30), f"{key} was not ingested"
    started = rt.invoke("LabelingTriggerFunction", {"reason": "manual", "sha256": [sha]})
    assert started["started"] is True, started
    return sha, started


def pending_task(console_url: str, sha: str) -> dict[str, Any] | None:
    _, body = call("GET", f"{console_url}/api/tasks")
    return next((t for t in body["tasks"] if t["sha256"] == sha), None)


def finished(rt: Any, arn: str) -> dict[str, Any]:
    sfn = rt.client("stepfunctions")
    out = wait_until(lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d, 90)
    assert out, f"labeling execution {arn} did not finish"
    return out
