"""``loupe demo`` audits IAM by default: the local AWS runs with ``iam=audit`` unless ``--iam`` or
``$LOUPE_LOCAL_IAM`` says otherwise, and the report carries each role's used-vs-granted table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from loupe_local.demo import report
from loupe_local.demo.command import DemoConfig, demo_iam, register
from loupe_local.demo.context import DemoContext
from loupe_local.iam.principals import RolePolicies

ROLE = "arn:aws:iam::123456789012:role/loupe-IngestRole"


def test_the_demo_enforces_iam_unless_told_otherwise_and_the_environment_wins() -> None:
    assert DemoConfig().iam == "enforce"
    assert demo_iam(None, {}) == "enforce"
    assert demo_iam("off", {}) == "off"
    assert demo_iam("enforce", {"LOUPE_LOCAL_IAM": ""}) == "enforce"
    assert demo_iam("off", {"LOUPE_LOCAL_IAM": "Enforce"}) == "enforce"  # the environment wins over the flag
    with pytest.raises(ValueError, match="LOUPE_LOCAL_IAM='on'"):
        demo_iam(None, {"LOUPE_LOCAL_IAM": "on"})
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["demo"]).iam is None
    assert parser.parse_args(["demo", "--iam", "enforce"]).iam == "enforce"
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--iam", "on"])


class _Started(Exception):
    pass


def test_the_demo_starts_the_local_aws_with_its_iam_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import loupe_local.host.runtime

    seen: dict[str, Any] = {}

    class Runtime:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

        def start(self) -> Any:
            raise _Started

    monkeypatch.setattr(loupe_local.host.runtime, "LocalRuntime", Runtime)
    monkeypatch.setenv("LOUPE_STATE_DIR", str(tmp_path / "elsewhere"))  # setup() points it at the demo's state
    from loupe_local.demo import stages as demo_stages

    with pytest.raises(_Started):
        demo_stages.setup(DemoContext(DemoConfig(out=tmp_path), tmp_path))
    assert seen["iam"] == "enforce"


def _audited_state(folder: Path) -> None:
    roles = RolePolicies()
    grant = {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}]}
    roles.add("loupe-IngestRole", ROLE, "inline", grant)
    roles.write(folder / "iam-roles.json")
    usage = [
        {
            "role": "loupe-IngestRole",
            "principal": "p",
            "action": "s3:GetObject",
            "resources": ["a"],
            "decision": "Allow",
        },
        {
            "role": "loupe-IngestRole",
            "principal": "p",
            "action": "sqs:SendMessage",
            "resources": ["q"],
            "decision": "ImplicitDeny",
            "reason": "no identity-based policy allows the sqs:SendMessage action on q",
        },
    ]
    (folder / "iam-usage.jsonl").write_text("".join(json.dumps(u) + "\n" for u in usage))


def test_the_demo_report_carries_used_against_granted_and_the_would_deny_count(tmp_path: Path) -> None:
    pytest.importorskip("policy_sentry")
    from loupe_local.iam.report import summarize

    _audited_state(tmp_path)
    iam = summarize(tmp_path, "audit")
    assert iam["would_deny"] == 1
    (role,) = iam["roles"]
    assert role["used"] == {"s3:GetObject": 1}
    assert role["denied"]["sqs:SendMessage"]["calls"] == 1
    assert role["unused"] == ["inline: s3:PutObject"]
    json.dumps(iam)  # it goes into summary.json as it is
    page = report.write_html(tmp_path, {"iam": iam}, {}).read_text()
    assert 'id="iam"' in page and "1 call(s) outside a role's grant" in page
    assert "s3:GetObject (1)" in page and "sqs:SendMessage (1)" in page and "inline: s3:PutObject" in page
    assert 'id="iam"' not in report.write_html(tmp_path, {}, {}).read_text()  # IAM off: no section
