"""``loupe canary status|promote|rollback``: a person's word on the canary running on the fleet.

The edge deployment workflow checks the group's canary item (``TARGET#<group>`` / ``CANARY`` in the deployments
table) at every window check; a verdict written here ends the window and wins over the statistics (the record
keeps both). Rejecting the package in the registry (console or ``UpdateModelPackage``) also ends a canary, rolled
back. In AWS name the deployments table and the thing group (``--table``, ``--group``: the stack's
``DeploymentsTable`` and ``ThingGroupName``); locally they come from ``.loupe/local.json``. The caller needs
``dynamodb:GetItem`` and ``dynamodb:UpdateItem`` on that table.
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from loupe.deployment.store import DeploymentsStore


def _store(args: argparse.Namespace) -> tuple[DeploymentsStore, str]:
    import boto3

    if args.table:
        if not args.group:
            raise SystemExit("loupe canary: --table needs --group (the stack's ThingGroupName)")
        return DeploymentsStore(boto3.resource("dynamodb", region_name=args.region).Table(args.table)), args.group
    from loupe_local import state as state_mod
    from loupe_local.local_auth import RunCredentials

    state, _ = state_mod.load_at(args.state, "or name the cloud's table and group with --table and --group")
    creds = RunCredentials.from_state(state)
    resource = boto3.resource(
        "dynamodb",
        endpoint_url=state["endpoint"],
        region_name=state.get("region", args.region),
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
    )
    table = resource.Table(state_mod.physical(state, "DeploymentsTable"))
    group = args.group or state_mod.physical(state, "FleetThingGroup")
    return DeploymentsStore(table), group


def _status(args: argparse.Namespace) -> int:
    store, group = _store(args)
    item: dict[str, Any] = store.canary(group) or {}
    print(json.dumps(item, default=str, indent=2) if item else f"no canary has run on thing group {group}")
    return 0


def _verdict(args: argparse.Namespace) -> int:
    store, group = _store(args)
    try:
        run = store.set_canary_override(group, args.canary_command, args.who or getpass.getuser(), args.reason)
    except ValueError as exc:
        raise SystemExit(f"loupe canary {args.canary_command}: {exc}") from None
    print(f"{args.canary_command} given to the canary of run {run} on {group}: it acts at its next window check")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("canary", help="the fleet's canary: its state; promote or roll it back by hand")
    sub = p.add_subparsers(dest="canary_command", required=True)

    def where(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--table", help="the stack's deployments table (AWS); default: the running local AWS")
        cmd.add_argument("--group", help="the fleet's thing group (default: the local stack's)")
        cmd.add_argument("--state", help="the local AWS's local.json (or its folder); default .loupe/local.json")
        cmd.add_argument("--region", default="us-east-1")

    status = sub.add_parser("status", help="the group's canary item: cohort, versions, status, a person's verdict")
    where(status)
    status.set_defaults(func=_status)
    for verdict in ("promote", "rollback"):
        cmd = sub.add_parser(verdict, help=f"{verdict} the running canary now, whatever its window says")
        cmd.add_argument(
            "--reason", default="", help="why (kept in the run's record; a rolled-back package's metadata too)"
        )
        cmd.add_argument("--who", help="who decides (default: the login name)")
        where(cmd)
        cmd.set_defaults(func=_verdict)
