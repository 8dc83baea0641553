"""Fixtures of the console web app's browser tests: a local stack of its own with the default labeling parameters
(LabelingService=Loupe: the labeling app, no Ground Truth), its bot labelers held in ``manual`` mode so that only the
people in the browser answer, and headless Chromium (Debian's ``chromium``, driven by Playwright) at the app's URL —
the console HTTP API's own URL, as in the cloud.

The session's ``local_aws`` runs Ground Truth as an existing customer, so this package starts its own runtime."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loupe_local.standins.groundtruth_workforce import set_workforce_mode
from loupe_local.standins.httpapi import HttpApis

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VENDOR = "functions/console_api/web/vendor/amazon-cognito-identity.min.js"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed: `apt-get install -y chromium` (make setup / .ci/run install it)")


@pytest.fixture(scope="package")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local stack with default parameters but the smallest training (a new dataset version may start one)."""
    from loupe_local.runtime import REPO_ROOT, LocalRuntime

    if not (REPO_ROOT / VENDOR).is_file():
        pytest.fail(f"{VENDOR} is missing: run `make web-vendor` (make setup does it)")
    saved = os.environ.copy()
    state = tmp_path_factory.mktemp("loupe-web-state")
    set_workforce_mode(state, "manual")  # the bot labelers stay idle: the browser's people answer
    runtime = LocalRuntime(
        state_dir=state,
        mqtt=False,
        parameters={"TrainingEpochs": "1", "RetrainEpochs": "1", "TrainingImageSize": "160"},
        # each function acts under its own role and every call is checked against its grant, as in the session's
        # stack: the console function's new routes hold to template.yaml's least privilege
        iam=None if os.environ.get("LOUPE_LOCAL_IAM", "").strip() else "audit",
    )
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()
        os.environ.clear()
        os.environ.update(saved)
    from support.iam_gate import stack_role_denials

    denials = stack_role_denials(runtime.state_dir, [])
    if denials:
        pytest.fail(
            "IAM: calls of the stack's roles outside their grant:\n  " + "\n  ".join(denials[:50]), pytrace=False
        )


@pytest.fixture(scope="package")
def app_url(web_stack: Any) -> str:
    return next(s for s in web_stack.standins if isinstance(s, HttpApis)).urls["ConsoleApi"]


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[[], Any]]:
    """Fresh pages, each in its own browser context (its own sessionStorage: one person each); a test fails when
    the app's Content-Security-Policy blocked anything a page loaded or ran (Chromium reports each violation on the
    page's console), or when a page threw an uncaught error."""
    contexts: list[Any] = []
    problems: list[str] = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
        page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
        return page

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
    assert problems == [], f"the pages reported: {problems}"
