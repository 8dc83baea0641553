"""``loupe labelers add EMAIL [--group G]`` and ``loupe labelers list``: the console's users, in the stack's pool.

In AWS (``--stack NAME`` or ``--user-pool-id ID``) Cognito e-mails the invitation with a temporary password that
nobody else sees. Locally (the default: the pool of the running local AWS, ``.loupe/local.json``) there is no
mail: the temporary password is made here and written, like a delivered e-mail, to
``.loupe/mail/<address>.txt`` (owner-only, 0600, in the owner-only state folder that already holds the run's
secret credential) instead of being printed, so it does not end up in a terminal log or a CI transcript. It only
allows the first sign-in, where the person must choose their own password (NEW_PASSWORD_REQUIRED).
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
from pathlib import Path
from typing import Any

from loupe.console_api import labelers
from loupe.console_api.identity import GROUPS


def temporary_password(length: int = 20) -> str:
    """A password that meets the pool's policy (upper and lower case, digits, symbols)."""
    symbols = "!#%*+-=?@^_"
    alphabet = string.ascii_letters + string.digits + symbols
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if (
            any(c.islower() for c in candidate)
            and any(c.isupper() for c in candidate)
            and any(c.isdigit() for c in candidate)
            and any(c in symbols for c in candidate)
        ):
            return candidate


def deliver_locally(state_dir: Path, email: str, password: str) -> Path:
    """The invitation Cognito would e-mail, as an owner-only file of the local state folder."""
    from loupe_local.private_files import write_private

    safe = "".join(c if c.isalnum() or c in "@._-" else "_" for c in email)
    text = (
        f"To: {email}\nSubject: Your Loupe console account\n\n"
        f"Sign in as {email} with the temporary password {password}\n"
        "You choose your own password at the first sign-in.\n"
    )
    return write_private(state_dir / "mail" / f"{safe}.txt", text)


def invite_locally(client: Any, pool: str, state_dir: Path, email: str, groups: list[str]) -> Path:
    """``loupe labelers add`` on the local stack: the user in ``groups`` (AdminCreateUser with the first, then
    AdminAddUserToGroup), its temporary password delivered to ``.loupe/mail/<address>.txt`` (never printed)."""
    password = temporary_password()
    added = labelers.add(client, pool, email, groups[0], temporary_password=password)
    for group in groups[1:]:
        labelers.add_to_group(client, pool, added["username"], group)
    return deliver_locally(state_dir, email, password)


def _target(args: argparse.Namespace) -> tuple[Any, str, Path | None]:
    """(cognito-idp client, pool id, local state folder or None in AWS)."""
    import boto3

    if args.user_pool_id or args.stack:
        session = boto3.Session(region_name=args.region)
        pool = args.user_pool_id
        if not pool:
            stack = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
            if "ConsoleUserPoolId" not in outputs:
                raise SystemExit(f"stack {args.stack} has no ConsoleUserPoolId output: deploy this version first")
            pool = outputs["ConsoleUserPoolId"]
        return session.client("cognito-idp"), pool, None
    from loupe_local import state as state_mod
    from loupe_local.local_auth import RunCredentials

    state, state_path = state_mod.load_at(args.state, "or name the cloud stack with --stack NAME (or --user-pool-id)")
    creds = RunCredentials.from_state(state)
    session = boto3.Session(
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        region_name=state.get("region", args.region),
    )
    client = session.client("cognito-idp", endpoint_url=state["endpoint"])
    return client, state_mod.physical(state, "ConsoleUserPool"), state_path.parent


def _add(args: argparse.Namespace) -> int:
    client, pool, local_dir = _target(args)
    try:
        if local_dir is not None:
            mail = invite_locally(client, pool, local_dir, args.email, [args.group])
            print(f"invited {args.email} to {args.group}; no e-mail locally: the invitation is in {mail} (owner-only)")
        else:
            labelers.add(client, pool, args.email, args.group)
            print(f"invited {args.email} to {args.group}; Cognito e-mails the temporary password")
    except labelers.LabelerError as exc:
        raise SystemExit(f"loupe labelers add: {exc}") from None
    return 0


def _list(args: argparse.Namespace) -> int:
    client, pool, _ = _target(args)
    users = labelers.list_users(client, pool)
    if args.json:
        print(json.dumps(users))
    else:
        for user in users:
            print(f"{user['email'] or user['username']}\t{','.join(user['groups']) or '-'}\t{user['status']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("labelers", help="the console's users: invite (add) and list them")
    sub = p.add_subparsers(dest="labelers_command", required=True)

    def where(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--stack", help="the deployed stack (AWS); default: the running local AWS")
        cmd.add_argument("--user-pool-id", help="the user pool (AWS), instead of --stack")
        cmd.add_argument("--state", help="the local AWS's local.json (or its folder); default .loupe/local.json")
        cmd.add_argument("--region", default="us-east-1")

    add = sub.add_parser("add", help="invite EMAIL into a group (Cognito AdminCreateUser)")
    add.add_argument("email")
    add.add_argument("--group", default="labelers", choices=GROUPS)
    where(add)
    add.set_defaults(func=_add)
    listing = sub.add_parser("list", help="the pool's users, their groups and status")
    listing.add_argument("--json", action="store_true")
    where(listing)
    listing.set_defaults(func=_list)
