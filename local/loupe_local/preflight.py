"""``loupe preflight``: before ``sam deploy``, what would fail in this account (read-only AWS calls).

Reads the deploy's inputs like ``sam deploy`` (samconfig.toml's ``[<env>.deploy.parameters]``, or
``--parameter-overrides``), then checks, with the user's AWS profile: the template's rules, Ground Truth, Lambda's
unreserved concurrency, the SageMaker instance quotas, the Greengrass service role and the thing group. One line
per finding (OK / WARN / FAIL, what it found, what to do); the exit status is 1 when any finding is FAIL.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from loupe_local.preflight_checks import READ_ACTIONS, Finding, PreflightClients, run_all
from loupe_local.preflight_plan import PlanError, parse_overrides, plan, read_samconfig


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``loupe preflight`` to the ``loupe`` CLI."""
    p = subparsers.add_parser(
        "preflight",
        help="before sam deploy: what would fail in this AWS account (read-only)",
        description="Check an AWS account for what a `sam deploy` of Loupe needs, with read-only calls: Ground "
        "Truth, Lambda concurrency, SageMaker instance quotas, the Greengrass service role, the thing group.",
        epilog="The profile needs these read-only actions: " + ", ".join(READ_ACTIONS) + ".",
    )
    p.add_argument("--profile", help="AWS profile (default: the environment's credentials)")
    p.add_argument("--region", help="AWS Region (default: samconfig.toml's, else the profile's)")
    p.add_argument(
        "--parameter-overrides",
        nargs="+",
        metavar="KEY=VALUE",
        help="as `sam deploy --parameter-overrides` (default: samconfig.toml's parameter_overrides)",
    )
    p.add_argument("--config-env", default="default", help="samconfig.toml environment (default: default)")
    p.add_argument("--config-file", default="samconfig.toml", help="relative to the project folder")
    p.add_argument("--stack-name", help="default: samconfig.toml's stack_name")
    p.add_argument("--template", default="template.yaml", help="relative to the project folder")
    p.add_argument("--json", action="store_true", help="print the findings as one JSON document")
    p.set_defaults(func=_cmd)
    return p


def _cmd(args: argparse.Namespace) -> int:
    import boto3

    from loupe_local.cli import _root

    root = _root()
    try:
        config = read_samconfig(root / args.config_file, args.config_env)
        overrides = config.overrides
        if args.parameter_overrides:
            overrides = parse_overrides(args.parameter_overrides)  # replaces samconfig's, as in sam deploy
        session = boto3.Session(profile_name=args.profile, region_name=args.region or config.region)
        if not session.region_name:
            raise PlanError("no AWS Region: pass --region, or set one in the profile or samconfig.toml")
        stack_name = args.stack_name or config.stack_name or "loupe"
        stack = plan(root / args.template, stack_name, overrides, session.region_name)
    except PlanError as exc:
        print(f"loupe preflight: {exc}", file=sys.stderr)
        return 2
    findings = run_all(stack, PreflightClients.from_factory(session.client))
    return report(findings, stack_name, session.region_name, as_json=args.json)


def report(findings: list[Finding], stack_name: str, region: str, as_json: bool, out: TextIO | None = None) -> int:
    """Print the findings; 1 when any is FAIL, else 0."""
    out = out or sys.stdout
    failed = [f for f in findings if f.status == "FAIL"]
    if as_json:
        doc: dict[str, Any] = {
            "stack": stack_name,
            "region": region,
            "ok": not failed,
            "findings": [f.as_dict() for f in findings],
        }
        print(json.dumps(doc, indent=2), file=out)
    else:
        print(f"loupe preflight: stack {stack_name} in {region}", file=out)
        for finding in findings:
            print(finding.line(), file=out)
        warned = sum(f.status == "WARN" for f in findings)
        verdict = f"{len(failed)} FAIL, {warned} WARN" if failed or warned else "all OK"
        print(f"loupe preflight: {verdict}", file=out)
    return 1 if failed else 0
