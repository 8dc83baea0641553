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


def held_summary(item: dict[str, Any]) -> list[str]:
    """A held canary in words: why, each model's labeled precision, until when, what a person can do; [] when the
    canary is not held."""
    hold = item.get("hold") or {}
    if item.get("status") != "RUNNING" or not hold:
        return []
    lines = [f"HELD since {hold.get('since')} until {hold.get('until')} (then rolled back, the safe default)"]
    lines += [f"  why: {reason}" for reason in hold.get("reasons") or []]
    for who, key in (("challenger", "canary"), ("champion", "champion")):
        lab = (hold.get("labels") or {}).get(key) or {}
        precision = lab.get("precision")
        lines.append(
            f"  {who} labeled precision: {'-' if precision is None else precision} ({lab.get('true_positives', 0)}/"
            f"{lab.get('predicted', 0)} boxes on {lab.get('frames', 0)} labeled frames; NG calls correct"
            f" {lab.get('ng_correct', 0)}/{lab.get('ng_calls', 0)})"
        )
    lines.append(
        "  label the canary's frames in the labeling app, or decide: loupe canary promote|rollback --reason ..."
    )
    return lines


def _status(args: argparse.Namespace) -> int:
    store, group = _store(args)
    item: dict[str, Any] = store.canary(group) or {}
    for line in held_summary(item):
        print(line)
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
