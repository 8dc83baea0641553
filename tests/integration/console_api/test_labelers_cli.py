"""``loupe labelers add|list`` against the session's local AWS: the invitation's temporary password lands in an
owner-only file (no e-mail locally), signs in once, and the person's group reaches the API's ``GET /me``."""

from __future__ import annotations

import json
import re
import stat
import uuid
from typing import Any

import pytest
from support.console_users import api, password

from loupe_local import cli
from loupe_local.console.signin import sign_in
from loupe_local.standins.httpapi.service import HttpApis


def _add(local_aws: Any, email: str, *extra: str) -> int:
    return cli.main(["labelers", "add", email, "--state", str(local_aws.state_dir), *extra])


def test_an_invited_approver_signs_in_with_the_mailed_password(local_aws: Any, capsys: Any) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    assert _add(local_aws, email, "--group", "approvers") == 0
    printed = capsys.readouterr().out
    mail = local_aws.state_dir / "mail" / f"{email}.txt"
    assert str(mail) in printed
    assert stat.S_IMODE(mail.stat().st_mode) == 0o600
    temporary = re.search(r"temporary password (\S+)", mail.read_text()).group(1)
    assert temporary not in printed  # the password is not echoed to the terminal

    idp = local_aws.client("cognito-idp")
    client_id = local_aws.physical("ConsoleUserPoolClient")
    tokens = sign_in(idp, local_aws.physical("ConsoleUserPool"), client_id, email, temporary, new_password=password())
    base = next(s for s in local_aws.standins if isinstance(s, HttpApis)).urls["ConsoleApi"]
    status, _, me = api(f"{base}/me", token=tokens["IdToken"])
    assert status == 200 and me["email"] == email and me["groups"] == ["approvers"], me

    assert cli.main(["labelers", "list", "--json", "--state", str(local_aws.state_dir)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"email": email, "groups": ["approvers"]}.items() <= next(u for u in listed if u["email"] == email).items()


def test_bad_invitations_are_refused_with_a_message(local_aws: Any, capsys: Any) -> None:
    with pytest.raises(SystemExit) as bad_address:
        _add(local_aws, "not-an-address")
    assert "is not an e-mail address" in str(bad_address.value)
    with pytest.raises(SystemExit):  # argparse: only Loupe's groups
        _add(local_aws, f"x-{uuid.uuid4().hex[:6]}@example.com", "--group", "admins")
    assert "invalid choice" in capsys.readouterr().err
    email = f"twice-{uuid.uuid4().hex[:8]}@example.com"
    assert _add(local_aws, email) == 0
    with pytest.raises(SystemExit) as twice:
        _add(local_aws, email)
    assert "already a user" in str(twice.value)
