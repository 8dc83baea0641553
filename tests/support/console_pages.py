"""People of the console's Cognito pool in the browser: invited with ``loupe labelers add`` (the CLI, its local
mail), signing in for the first time through the app's own pages (SRP with the temporary password, then a password
of their own)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from loupe_local import cli


def invite(rt: Any, group: str) -> tuple[str, str]:
    """``loupe labelers add`` (the CLI): the invited e-mail and the temporary password from its local mail."""
    email = f"web-{group}-{uuid.uuid4().hex[:8]}@example.com"
    assert cli.main(["labelers", "add", email, "--group", group, "--state", str(rt.state_dir)]) == 0
    mail = (Path(rt.state_dir) / "mail" / f"{email}.txt").read_text()
    found = re.search(r"temporary password (\S+)", mail)
    assert found, mail
    return email, found.group(1)


def sign_in(page: Any, app_url: str, email: str, temporary: str) -> str:
    """A first sign-in through the pages: SRP with the temporary password, then a password of one's own."""
    page.goto(f"{app_url}/")
    page.wait_for_url(re.compile(r"/web/signin\.html\?next="))
    page.fill("#email", email)
    page.fill("#password", temporary)
    page.click("#signin-submit")
    page.wait_for_selector("#new-password-form:not([hidden])")
    chosen = f"Web-{uuid.uuid4().hex[:10]}!9"
    page.fill("#new-password", chosen)
    page.fill("#new-password-again", chosen)
    page.click("#new-password-submit")
    page.wait_for_url(re.compile(r"/web/labeling\.html$"))
    page.wait_for_selector("header .who[data-me]")
    return chosen
