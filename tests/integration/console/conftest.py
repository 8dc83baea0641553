"""Fixtures of the console browser tests: the console app the session's local stack serves (its ConsoleApi behind
the local HTTP API stand-in), and headless Chromium (Debian's ``chromium``, driven by Playwright) pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.chromium import CHROMIUM_ARGS, chromium_path, watched_page

from loupe.ledger import Ledger
from loupe_local.standins.groundtruth.workforce import Workforce, set_workforce_mode


@pytest.fixture(scope="module")
def console(local_aws: Any) -> str:
    """The console app's URL: the stack's ConsoleApi served by the local HTTP API stand-in (no separate server)."""
    url = local_aws.console_url()
    assert url, "the local stack serves no ConsoleApi"
    return str(url).rstrip("/")


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
def chromium_with(browser: Any) -> Iterator[Callable[[list[str]], Any]]:
    """Launches a separate headless Chromium with extra switches (e.g. ``--host-resolver-rules``) from the module
    browser's Playwright (one Playwright per thread); closed after the test."""
    launched: list[Any] = []

    def launch(extra: list[str]) -> Any:
        args = [*CHROMIUM_ARGS, *extra]
        launched.append(browser.browser_type.launch(executable_path=chromium_path(), args=args))
        return launched[-1]

    try:
        yield launch
    finally:
        for instance in launched:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; a test fails when the console's Content-Security-Policy blocked anything it loaded or ran (the
    attack pages' own failures are theirs to check)."""
    with watched_page(browser, uncaught=False) as fresh:
        yield fresh


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

    dynamodb = local_aws.resource("dynamodb")
    return Ledger(dynamodb.Table(local_aws.physical("LedgerTable")))
