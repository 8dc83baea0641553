"""Debian's ``chromium`` for the browser tests (Playwright drives it; ``playwright install`` cannot download here)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed: run scripts/install_prereqs.sh (.ci/run runs it)")


@contextmanager
def watched_page(browser: Any, init_script: str | None = None, uncaught: bool = True) -> Iterator[Any]:
    """A fresh page in a browser context of its own (its own sessionStorage), ``init_script`` run before any of the
    page's own; on exit the context is closed and the test fails when the Content-Security-Policy blocked anything
    the page loaded or ran (Chromium reports each violation on the page's console) or, with ``uncaught``, when a page
    threw an error nothing caught."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    if uncaught:
        page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    try:
        yield page
    finally:
        context.close()
    assert problems == [], f"the page reported: {problems}"
