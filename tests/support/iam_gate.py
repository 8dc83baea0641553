"""The test session's zero-deny gate (issue 19): the calls of the stack's roles that their grant would refuse.

The session's ``local_aws`` runs in ``enforce``; at its end ``stack_role_denials`` reads ``iam-usage.jsonl`` and the
session fails on any would-deny of a role the stack creates (``iam-roles.json``) and on any delivery a service
(EventBridge, IoT rules, alarm actions) would be refused by the resource policy of a resource the stack creates
(``stack_resource``), except the line ranges written
while a test marked ``iam_would_deny`` ran (tests of the IAM check itself provoke denials on purpose).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loupe_local.iam.audit import ROLES_FILE, USAGE_FILE, read_usage, usage_log_lines
from loupe_local.iam.report import DENIED


def usage_lines(state_dir: Path) -> int:
    """How many lines the usage log holds now (the position a test's own records start at)."""
    return len(usage_log_lines(Path(state_dir) / USAGE_FILE))


def usage(rt: Any, start: int = 0) -> list[dict[str, Any]]:
    """The usage records of ``rt``'s log from line ``start`` (``usage_lines``) on; a line still being written is
    left for the next read."""
    return read_usage(Path(rt.state_dir) / USAGE_FILE, start)


def stack_role_denials(state_dir: Path, expected: list[tuple[int, int]]) -> list[str]:
    """The calls of the stack's roles that their grant would refuse (``iam-usage.jsonl``), outside ``expected``
    line ranges: one readable line each (role, action, resources, reason)."""
    roles_path, usage_path = Path(state_dir) / ROLES_FILE, Path(state_dir) / USAGE_FILE
    stack_roles = set(json.loads(roles_path.read_text())) if roles_path.is_file() else set()
    lines = usage_log_lines(usage_path)
    found = []
    for number, line in enumerate(lines):  # numbered as usage_lines counts them
        try:
            record = json.loads(line)
        except ValueError:
            found.append(f"line {number + 1} of {usage_path} is not a usage record: {line[:200]!r}")
            continue
        # a stack role's call, or a service's delivery to a resource the stack made (its resource policy)
        ours = record.get("role") in stack_roles or bool(record.get("stack_resource"))
        if record.get("decision") not in DENIED or not ours:
            continue
        if any(start <= number < end for start, end in expected):
            continue
        if record.get("stack_resource"):
            found.append(
                f"{record.get('principal')} {record.get('action')} on {record.get('stack_resource')} "
                f"({', '.join(record.get('resources', []))}) for {record.get('source')}: {record.get('decision')} "
                "(its resource-based policy)"
            )
            continue
        found.append(
            f"{record.get('role')} {record.get('action')} on {', '.join(record.get('resources', []))}: "
            f"{record.get('decision')} ({record.get('operation')} from {record.get('principal')})"
        )
    return found
