"""The local Cognito's SRP speaks Cognito's wire format as the browser app's library writes it: sign-in with
``amazon-cognito-identity-js`` (under node, unsigned, through the local endpoint), an implementation independent of
both the stand-in and pycognito (hex SRP_A/SRP_B/SALT it parses as BigIntegers, its own padding, the unpadded-day
TIMESTAMP, USERNAME = USER_ID_FOR_SRP in its answer).

Needs node and the library: ``<repo>/node_modules`` or ``$LOUPE_NODE_MODULES``; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.console_users import api, password

from loupe.console_api import labelers
from loupe_local.standins.httpapi.service import HttpApis

SCRIPT = Path(__file__).resolve().parents[2] / "support" / "srp_cognito_js_signin.js"


def _node_modules(repo_root: Path) -> Path | None:
    for candidate in (os.environ.get("LOUPE_NODE_MODULES"), str(repo_root / "node_modules")):
        if candidate and (Path(candidate) / "amazon-cognito-identity-js" / "package.json").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def js_sign_in(repo_root: Path, local_aws: Any) -> Any:
    modules = _node_modules(repo_root)
    if shutil.which("node") is None or modules is None:
        pytest.skip("node and amazon-cognito-identity-js (node_modules or $LOUPE_NODE_MODULES) are not here")
    pool, client = local_aws.physical("ConsoleUserPool"), local_aws.physical("ConsoleUserPoolClient")

    def sign_in(username: str, secret: str, new_password: str = "") -> dict[str, Any]:
        done = subprocess.run(  # noqa: S603 - node, the repository's script, arguments of this test
            ["node", str(SCRIPT), local_aws.endpoint, pool, client, username, secret, new_password],
            env={**os.environ, "NODE_PATH": str(modules)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0 and done.stdout.strip(), done.stderr
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return answer

    return sign_in


def test_the_browser_library_signs_in_by_srp_and_is_refused_a_wrong_password(local_aws: Any, js_sign_in: Any) -> None:
    email, temporary, chosen = f"js-{uuid.uuid4().hex[:8]}@example.com", password(), password()
    labelers.add(
        local_aws.client("cognito-idp"),
        local_aws.physical("ConsoleUserPool"),
        email,
        "approvers",
        temporary_password=temporary,
    )
    wrong = js_sign_in(email, password())
    assert wrong == {"ok": False, "code": "NotAuthorizedException", "message": "Incorrect username or password."}
    first = js_sign_in(email, temporary, chosen)  # the invitation's password, then one of the person's own
    assert first["ok"], first
    again = js_sign_in(email, chosen)
    assert again["ok"], again
    base = next(s for s in local_aws.standins if isinstance(s, HttpApis)).urls["ConsoleApi"]
    for tokens in (first, again):  # the API knows the person by their address after either sign-in
        status, _, me = api(f"{base}/me", token=tokens["id"])
        assert status == 200 and me["email"] == email and me["groups"] == ["approvers"], me
    assert js_sign_in(email, temporary)["code"] == "NotAuthorizedException"  # the temporary one is spent
    ghost = js_sign_in(f"nobody-{uuid.uuid4().hex[:8]}@example.com", chosen)
    assert ghost == wrong
