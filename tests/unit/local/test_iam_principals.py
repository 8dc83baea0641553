"""Trust policies, the roles' policy set, and the used-vs-granted report (loupe_local.iam principals/report)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from loupe_local.iam.evaluate import Request, evaluate
from loupe_local.iam.principals import RolePolicies, role_policies, trusts

ROLE = "arn:aws:iam::123456789012:role/loupe-FnRole"
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]}, "Action": ["sts:AssumeRole"]}
    ],
}


def test_a_trust_policy_admits_only_the_services_it_names() -> None:
    assert trusts(LAMBDA_TRUST, ROLE, "lambda.amazonaws.com")
    assert not trusts(LAMBDA_TRUST, ROLE, "states.amazonaws.com")
    assert not trusts({"Statement": []}, ROLE, "lambda.amazonaws.com")


def test_a_trust_statement_must_allow_assume_role_and_an_explicit_deny_wins() -> None:
    tag_only = {"Statement": [{**LAMBDA_TRUST["Statement"][0], "Action": "sts:TagSession"}]}
    assert not trusts(tag_only, ROLE, "lambda.amazonaws.com")
    denied = {
        "Statement": [
            LAMBDA_TRUST["Statement"][0],
            {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"},
        ]
    }
    assert not trusts(denied, ROLE, "lambda.amazonaws.com")
    conditioned = {
        "Statement": [
            {
                **LAMBDA_TRUST["Statement"][0],
                "Condition": {"StringEquals": {"aws:PrincipalServiceName": "events.amazonaws.com"}},
            }
        ]
    }
    assert not trusts(conditioned, ROLE, "lambda.amazonaws.com")


def test_role_policies_take_inline_attached_and_managed_policies() -> None:
    resources: dict[str, Any] = {
        "FnRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Policies": [
                    {
                        "PolicyName": "inline",
                        "PolicyDocument": {
                            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]
                        },
                    }
                ],
                "ManagedPolicyArns": ["arn:aws:iam::aws:policy/Managed", "arn:aws:iam::aws:policy/Unknown"],
            },
        },
        "Extra": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyName": "extra",
                "Roles": ["loupe-FnRole"],
                "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]},
            },
        },
    }
    managed = {
        "arn:aws:iam::aws:policy/Managed": {"Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}
    }
    roles = role_policies(resources, {"FnRole": ROLE}, lambda props: props, managed.get)
    assert set(roles.documents["loupe-FnRole"]) == {"inline", "arn:aws:iam::aws:policy/Managed", "extra"}
    policies = roles.policies("loupe-FnRole")
    for action in ("s3:GetObject", "sqs:SendMessage", "logs:PutLogEvents"):
        assert evaluate(policies, Request(action, "arn:aws:x")).allowed, action
    assert not evaluate(policies, Request("s3:PutObject", "arn:aws:x")).allowed


def test_roles_survive_the_state_file(tmp_path: Path) -> None:
    roles = RolePolicies()
    roles.add("r", ROLE, "p", {"Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]})
    back = RolePolicies.read(roles.write(tmp_path / "iam-roles.json"))
    assert back.arns == {"r": ROLE}
    assert evaluate(back.policies("r"), Request("s3:GetObject", "arn:aws:s3:::b/k")).allowed


def test_the_report_shows_used_denied_and_unused_grants(tmp_path: Path) -> None:
    pytest.importorskip("policy_sentry")
    from loupe_local.iam.report import build, print_report

    roles = RolePolicies()
    actions = ["s3:GetObject*", "dynamodb:PutItem", "dynamodb:Query"]
    grant = {"Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    roles.add("loupe-FnRole", ROLE, "inline", grant)
    roles.add("loupe-OtherRole", ROLE + "2", "inline", grant)
    roles.write(tmp_path / "iam-roles.json")
    usage = [
        {
            "role": "loupe-FnRole",
            "principal": "p",
            "action": "s3:GetObject",
            "resources": ["a", "b"],
            "decision": "Allow",
        },
        {"role": "loupe-FnRole", "principal": "p", "action": "s3:GetObject", "resources": ["a"], "decision": "Allow"},
        {
            "role": "loupe-FnRole",
            "principal": "p",
            "action": "dynamodb:Scan",
            "resources": ["t"],
            "decision": "ImplicitDeny",
            "reason": "no identity-based policy allows the dynamodb:Scan action on t",
        },
    ]
    (tmp_path / "iam-usage.jsonl").write_text("".join(json.dumps(u) + "\n" for u in usage) + "not json\n")
    reports = {r.role: r for r in build(tmp_path)}
    mine = reports["loupe-FnRole"]
    assert (mine.used["s3:GetObject"].calls, len(mine.used["s3:GetObject"].resources)) == (2, 2)
    assert mine.would_deny == 1
    assert "inline: dynamodb:PutItem, dynamodb:Query" in mine.unused
    # the wildcard grant is expanded from the Service Authorization Reference data: GetObject is used, its
    # siblings (GetObjectAcl, GetObjectTagging, ...) are not
    (wild,) = [line for line in mine.unused if line.startswith("inline: s3:GetObject*")]
    listed = wild.split("(", 1)[1].rstrip(")").split(", ")
    assert "s3:GetObjectAcl" in listed and "s3:GetObject" not in listed
    assert not reports["loupe-OtherRole"].used
    out = io.StringIO()
    assert print_report(tmp_path, out) == 1
    text = out.getvalue()
    assert "used     s3:GetObject  2 call(s), 2 resource(s)" in text
    assert "DENIED   dynamodb:Scan  1 call(s): no identity-based policy allows" in text
    assert "(no call recorded in this run)" in text
