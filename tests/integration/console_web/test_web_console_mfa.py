"""Sign-in of a person who turned on an authenticator app: the page answers Cognito's SOFTWARE_TOKEN_MFA challenge
with the one-time code (RFC 6238, checked by the local Cognito); a wrong code is refused with Cognito's message and
signs nobody in."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from loupe_local.console.signin import sign_in
from loupe_local.totp import code as totp

pytestmark = pytest.mark.integration


def test_a_person_with_an_authenticator_app_signs_in_with_a_one_time_code(
    web_stack: Any, app_url: str, new_page: Callable[[], Any]
) -> None:
    from loupe_local import cli

    # (the local Cognito gives each user a secret of their own and checks every code: standins/cognito/service.py)
    email = f"web-mfa-{uuid.uuid4().hex[:8]}@example.com"
    assert cli.main(["labelers", "add", email, "--state", str(web_stack.state_dir)]) == 0
    temporary = re.search(r"temporary password (\S+)", (web_stack.state_dir / "mail" / f"{email}.txt").read_text())
    assert temporary
    chosen = f"Mfa-{uuid.uuid4().hex[:8]}!1"
    # the person sets up an authenticator app (UserPoolMfa=OPTIONAL, the default: each person may turn it on)
    idp = web_stack.client("cognito-idp")
    client_id = web_stack.physical("ConsoleUserPoolClient")
    pool = web_stack.physical("ConsoleUserPool")
    tokens = sign_in(idp, pool, client_id, email, temporary.group(1), new_password=chosen)
    secret = idp.associate_software_token(AccessToken=tokens["AccessToken"])["SecretCode"]
    idp.verify_software_token(AccessToken=tokens["AccessToken"], UserCode=totp(secret), FriendlyDeviceName="phone")
    idp.set_user_mfa_preference(
        AccessToken=tokens["AccessToken"], SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True}
    )
    page = new_page()
    page.goto(f"{app_url}/web/signin.html?next=%2Fweb%2Fmodels.html")
    page.fill("#email", email)
    page.fill("#password", chosen)
    page.click("#signin-submit")
    page.wait_for_selector("#totp-form:not([hidden])")
    page.fill("#totp-code", "000000" if totp(secret) != "000000" else "111111")
    page.click("#totp-form button")
    page.wait_for_selector("#msg[data-kind='error']")
    assert page.evaluate("sessionStorage.length") == 0
    # a wrong code ends Cognito's session: the person starts again with the password, then a good code
    page.reload()
    page.fill("#email", email)
    page.fill("#password", chosen)
    page.click("#signin-submit")
    page.wait_for_selector("#totp-form:not([hidden])")
    page.fill("#totp-code", totp(secret))
    page.click("#totp-form button")
    page.wait_for_url(re.compile(r"/web/models\.html$"))
    page.wait_for_selector("header .who[data-me]")
    assert page.locator("header .who").inner_text().startswith(email)
