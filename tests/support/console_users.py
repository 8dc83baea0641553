"""Users of the console's Cognito pool for tests: invited with ``loupe.console_api.labelers.add`` (what
``loupe labelers add`` calls), their first sign-in answered (NEW_PASSWORD_REQUIRED), tokens from InitiateAuth.

Sign-in uses SRP (``USER_SRP_AUTH``, pycognito's client), the one flow the stack's app client allows by default; the
local Cognito checks the password proof as Cognito does (``loupe_local.standins.cognito.service``).
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
import uuid
from typing import Any

from loupe.console_api import labelers
from loupe_local.console.signin import sign_in


def password() -> str:
    return f"Aa1!{secrets.token_urlsafe(12)}"


def signed_in(runtime: Any, group: str) -> dict[str, str]:
    """A new user of ``group``: e-mail, password and its tokens (IdToken, AccessToken)."""
    idp = runtime.client("cognito-idp")
    pool = runtime.physical("ConsoleUserPool")
    email = f"{group}-{uuid.uuid4().hex[:8]}@example.com"
    temporary = password()
    labelers.add(idp, pool, email, group, temporary_password=temporary)
    return first_sign_in(runtime, email, temporary)


def first_sign_in(runtime: Any, email: str, temporary: str) -> dict[str, str]:
    """An invited user's first sign-in by SRP: the temporary password, then one of their own (NEW_PASSWORD_REQUIRED).
    E-mail, the chosen password and the tokens (``id``, ``access``, ``refresh``)."""
    idp = runtime.client("cognito-idp")
    pool = runtime.physical("ConsoleUserPool")
    client_id = runtime.physical("ConsoleUserPoolClient")
    chosen = password()
    tokens = sign_in(idp, pool, client_id, email, temporary, new_password=chosen)
    return {
        "email": email,
        "password": chosen,
        "id": tokens["IdToken"],
        "access": tokens["AccessToken"],
        "refresh": tokens.get("RefreshToken", ""),
    }


def browser_session(runtime: Any, group: str) -> dict[str, str]:
    """A new user of ``group``, signed in: the tokens the browser library keeps, with the app client and the
    user's Cognito username (what amazon-cognito-identity-js names its storage keys with)."""
    email = f"web-{group}-{uuid.uuid4().hex[:8]}@example.com"
    temporary = password()
    labelers.add(runtime.client("cognito-idp"), runtime.physical("ConsoleUserPool"), email, group, temporary)
    tokens = first_sign_in(runtime, email, temporary)
    payload = tokens["id"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {
        **tokens,
        "client_id": runtime.physical("ConsoleUserPoolClient"),
        "username": str(claims["cognito:username"]),
    }


def session_init_script(session: dict[str, str]) -> str:
    """A page init script that puts ``session`` where the console's shell has amazon-cognito-identity-js keep it
    (sessionStorage only; keys ``CognitoIdentityServiceProvider.<client id>.<username>.*``): the page opens signed in
    as that user, without going through the sign-in page (which has browser tests of its own)."""
    prefix = f"CognitoIdentityServiceProvider.{session['client_id']}"
    user = f"{prefix}.{session['username']}"
    items = {
        f"{prefix}.LastAuthUser": session["username"],
        f"{user}.idToken": session["id"],
        f"{user}.accessToken": session["access"],
        f"{user}.refreshToken": session["refresh"],
        f"{user}.clockDrift": "0",
    }
    return f"for (const [k, v] of Object.entries({json.dumps(items)})) sessionStorage.setItem(k, v);"


def api(
    url: str,
    method: str = "GET",
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One call to the local HTTP API: status, headers (lower-cased names), JSON body (or raw text)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))  # noqa: S310 - the local API's http://127.0.0.1 URL
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - same
            status, got, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, got, raw = exc.code, exc.headers, exc.read()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, {k.lower(): v for k, v in got.items()}, parsed
