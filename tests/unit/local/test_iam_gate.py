"""The test session's zero-deny gate: every would-deny of a stack role is listed, except the ranges of tests that
provoke denials on purpose; a test's own role and allowed calls never count."""

from __future__ import annotations

import json
from pathlib import Path

from support.iam_gate import stack_role_denials, usage, usage_lines

from loupe_local.iam.principals import RolePolicies

STACK = "loupe-FeedbackFunctionRole-1c89c0ce"


def _record(role: str, decision: str, queue: str) -> dict[str, object]:
    return {
        "role": role,
        "principal": f"arn:aws:sts::123456789012:assumed-role/{role}/fn",
        "operation": "SendMessage",
        "action": "sqs:SendMessage",
        "resources": [f"arn:aws:sqs:us-east-1:123456789012:{queue}"],
        "decision": decision,
    }


def _stack_role(state_dir: Path) -> None:
    """The state folder's iam-roles.json, naming STACK as a role of the stack."""
    roles = RolePolicies()
    roles.add(STACK, f"arn:aws:iam::123456789012:role/{STACK}", "inline", {"Statement": []})
    roles.write(state_dir / "iam-roles.json")


def test_the_gate_lists_a_stack_roles_would_deny_outside_the_tests_that_provoke_them(tmp_path: Path) -> None:
    _stack_role(tmp_path)
    records = [
        _record(STACK, "Allow", "loupe-failures"),
        _record(STACK, "ImplicitDeny", "provoked"),  # line 1: a test of the IAM check, on purpose
        _record(STACK, "ImplicitDeny", "itest-failing-onfailure"),
        _record("itest-failing-role", "ImplicitDeny", "not-a-stack-role"),
        _record(STACK, "ExplicitDeny", "fenced"),
    ]
    (tmp_path / "iam-usage.jsonl").write_text("".join(json.dumps(u) + "\n" for u in records))
    assert usage_lines(tmp_path) == 5
    found = stack_role_denials(tmp_path, [(1, 2)])
    assert len(found) == 2
    assert found[0].startswith(f"{STACK} sqs:SendMessage on arn:aws:sqs:us-east-1:123456789012:itest-failing-onfailure")
    assert "ImplicitDeny (SendMessage from arn:aws:sts::123456789012:assumed-role/" in found[0]
    assert "fenced: ExplicitDeny" in found[1]
    assert len(stack_role_denials(tmp_path, [])) == 3
    (tmp_path / "iam-usage.jsonl").write_text(json.dumps(records[0]) + "\n{broken\n")
    (broken,) = stack_role_denials(tmp_path, [])
    assert "line 2" in broken and "is not a usage record" in broken
    assert stack_role_denials(tmp_path / "nothing", []) == []


def test_a_services_refused_delivery_to_a_stack_resource_fails_the_gate(tmp_path: Path) -> None:
    """A resource-policy check of a delivery (no role: the principal is the service) counts when the target is the
    stack's (a template that forgot a Lambda permission or a queue policy), not when it is a test's own."""
    delivery = {
        "principal": "events.amazonaws.com",
        "role": None,
        "operation": "delivery",
        "action": "lambda:InvokeFunction",
        "resources": ["arn:aws:lambda:us-east-1:123456789012:function:loupe-IngestImageFunction-1"],
        "decision": "ImplicitDeny",
        "check": "resource-policy",
        "source": "arn:aws:events:us-east-1:123456789012:rule/loupe-raw",
    }
    records = [
        {**delivery, "stack_resource": "IngestImageFunction"},
        {**delivery, "stack_resource": None},  # a test's own function
        {**delivery, "stack_resource": "IngestImageFunction", "decision": "Allow"},
    ]
    (tmp_path / "iam-usage.jsonl").write_text("".join(json.dumps(u) + "\n" for u in records))
    (found,) = stack_role_denials(tmp_path, [])
    assert found.startswith("events.amazonaws.com lambda:InvokeFunction on IngestImageFunction")
    assert "rule/loupe-raw: ImplicitDeny (its resource-based policy)" in found


def test_a_usage_line_still_being_written_is_left_for_the_next_read_and_keeps_its_number(tmp_path: Path) -> None:
    """The log is appended while tests read it (a pipeline's job writes its calls while an IAM test counts lines):
    a reader sees complete lines only, so a half-written record is neither an error nor a shifted position."""
    _stack_role(tmp_path)
    first, second = _record(STACK, "Allow", "one"), _record(STACK, "ImplicitDeny", "two")
    log = tmp_path / "iam-usage.jsonl"
    whole = json.dumps(second) + "\n"
    log.write_text(json.dumps(first) + "\n" + whole[:40])
    runtime = type("Runtime", (), {"state_dir": tmp_path})()
    assert usage_lines(tmp_path) == 1
    assert [r["resources"] for r in usage(runtime)] == [first["resources"]]
    assert stack_role_denials(tmp_path, []) == []  # the unfinished denial is not read (nor reported broken) yet
    with log.open("a") as out:
        out.write(whole[40:])
    assert usage_lines(tmp_path) == 2
    assert [r["decision"] for r in usage(runtime, 1)] == ["ImplicitDeny"]
    assert len(stack_role_denials(tmp_path, [])) == 1
