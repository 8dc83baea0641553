"""The local IAM evaluator against the IAM User Guide's documented evaluation rules.

Pages: "Policy evaluation logic" (explicit deny > allow > implicit deny), "IAM JSON policy elements: NotAction /
NotResource", "Condition operators" (missing keys, IfExists, Null), "Conditions with multiple context keys or
values" (OR / NOR / ForAllValues / ForAnyValue), "IAM policy elements: Variables and tags".
"""

from __future__ import annotations

from typing import Any

import pytest

from loupe_local.iam import mode
from loupe_local.iam.evaluate import Policy, PolicyError, Request, evaluate, evaluate_all

BUCKET = "arn:aws:s3:::amzn-s3-demo-bucket"


def policy(*statements: dict[str, Any]) -> Policy:
    return Policy.parse("p", {"Version": "2012-10-17", "Statement": list(statements)})


def decide(p: Policy | list[Policy], action: str, resource: str, **context: Any) -> str:
    policies = p if isinstance(p, list) else [p]
    return evaluate(policies, Request(action, resource, context)).decision


ALLOW_GET = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"}


def test_no_applicable_statement_is_an_implicit_deny() -> None:
    assert decide([], "s3:GetObject", f"{BUCKET}/a") == "ImplicitDeny"
    assert decide(policy(ALLOW_GET), "s3:PutObject", f"{BUCKET}/a") == "ImplicitDeny"


def test_an_allow_grants_and_an_explicit_deny_in_any_policy_overrides_it() -> None:
    deny = Policy.parse("deny", {"Statement": {"Effect": "Deny", "Action": "s3:*", "Resource": f"{BUCKET}/secret/*"}})
    assert decide(policy(ALLOW_GET), "s3:GetObject", f"{BUCKET}/a") == "Allow"
    assert decide([policy(ALLOW_GET), deny], "s3:GetObject", f"{BUCKET}/secret/a") == "ExplicitDeny"
    assert decide([policy(ALLOW_GET), deny], "s3:GetObject", f"{BUCKET}/public/a") == "Allow"


def test_action_names_are_case_insensitive_resources_case_sensitive() -> None:
    p = policy(ALLOW_GET)
    assert decide(p, "S3:getobject", f"{BUCKET}/a") == "Allow"
    assert decide(p, "s3:GetObject", "arn:aws:s3:::AMZN-S3-DEMO-BUCKET/a") == "ImplicitDeny"


def test_question_mark_matches_one_character_and_star_any_run() -> None:
    p = policy({"Effect": "Allow", "Action": "s3:Get?bject", "Resource": f"{BUCKET}/2026-??/*"})
    assert decide(p, "s3:GetObject", f"{BUCKET}/2026-01/x/y") == "Allow"
    assert decide(p, "s3:GetObject", f"{BUCKET}/2026-1/x") == "ImplicitDeny"
    assert decide(p, "s3:GetObjects", f"{BUCKET}/2026-01/x") == "ImplicitDeny"


def test_regex_characters_in_a_pattern_are_literal() -> None:
    p = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/a.b"})
    assert decide(p, "s3:GetObject", f"{BUCKET}/a.b") == "Allow"
    assert decide(p, "s3:GetObject", f"{BUCKET}/axb") == "ImplicitDeny"


def test_wildcards_do_not_span_arn_segments() -> None:
    p = policy({"Effect": "Allow", "Action": "sns:Publish", "Resource": "arn:aws:sns:*:123456789012:alerts"})
    assert decide(p, "sns:Publish", "arn:aws:sns:eu-west-1:123456789012:alerts") == "Allow"
    assert decide(p, "sns:Publish", "arn:aws:sns:eu-west-1:999999999999:x:123456789012:alerts") == "ImplicitDeny"


def test_not_action_allows_everything_but_the_named_actions() -> None:
    # "NotAction with Allow": every action except IAM's
    p = policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert decide(p, "s3:GetObject", f"{BUCKET}/a") == "Allow"
    assert decide(p, "iam:CreateUser", "arn:aws:iam::123456789012:user/x") == "ImplicitDeny"


def test_not_resource_deny_denies_everything_outside_the_named_resources() -> None:
    p = [
        policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
        Policy.parse(
            "fence",
            {"Statement": [{"Effect": "Deny", "Action": "s3:*", "NotResource": [BUCKET, f"{BUCKET}/*"]}]},
        ),
    ]
    assert decide(p, "s3:GetObject", f"{BUCKET}/a") == "Allow"
    assert decide(p, "s3:GetObject", "arn:aws:s3:::other-bucket/a") == "ExplicitDeny"


def test_a_missing_key_fails_a_condition_but_satisfies_a_negated_one() -> None:
    allow_tagged = policy({**ALLOW_GET, "Condition": {"StringEquals": {"aws:PrincipalTag/team": "vision"}}})
    assert decide(allow_tagged, "s3:GetObject", f"{BUCKET}/a") == "ImplicitDeny"
    assert decide(allow_tagged, "s3:GetObject", f"{BUCKET}/a", **{"aws:PrincipalTag/team": "vision"}) == "Allow"
    not_other = policy({**ALLOW_GET, "Condition": {"StringNotEquals": {"aws:PrincipalTag/team": "other"}}})
    assert decide(not_other, "s3:GetObject", f"{BUCKET}/a") == "Allow"


def test_condition_key_names_are_case_insensitive_values_are_not() -> None:
    p = policy({**ALLOW_GET, "Condition": {"StringEquals": {"AWS:PrincipalTag/Team": "vision"}}})
    assert decide(p, "s3:GetObject", f"{BUCKET}/a", **{"aws:principaltag/team": "vision"}) == "Allow"
    assert decide(p, "s3:GetObject", f"{BUCKET}/a", **{"aws:principaltag/team": "Vision"}) == "ImplicitDeny"


def test_values_of_one_key_are_ored_and_nored_when_negated() -> None:
    either = policy({**ALLOW_GET, "Condition": {"StringEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]}}})
    assert decide(either, "s3:GetObject", f"{BUCKET}/a", **{"aws:RequestedRegion": "us-east-1"}) == "Allow"
    neither = policy(
        {**ALLOW_GET, "Condition": {"StringNotEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]}}}
    )
    assert decide(neither, "s3:GetObject", f"{BUCKET}/a", **{"aws:RequestedRegion": "us-east-1"}) == "ImplicitDeny"
    assert decide(neither, "s3:GetObject", f"{BUCKET}/a", **{"aws:RequestedRegion": "ap-south-1"}) == "Allow"


def test_operators_and_keys_are_anded() -> None:
    p = policy(
        {
            **ALLOW_GET,
            "Condition": {
                "StringEquals": {"aws:RequestedRegion": "us-east-1", "aws:PrincipalAccount": "123456789012"},
                "Bool": {"aws:SecureTransport": "true"},
            },
        }
    )
    ok = {"aws:RequestedRegion": "us-east-1", "aws:PrincipalAccount": "123456789012", "aws:SecureTransport": True}
    assert decide(p, "s3:GetObject", f"{BUCKET}/a", **ok) == "Allow"
    assert decide(p, "s3:GetObject", f"{BUCKET}/a", **{**ok, "aws:SecureTransport": False}) == "ImplicitDeny"
    assert decide(p, "s3:GetObject", f"{BUCKET}/a", **{**ok, "aws:PrincipalAccount": "1"}) == "ImplicitDeny"


def test_tls_deny_of_a_bucket_policy_applies_only_to_plain_http() -> None:
    deny_plain = Policy.parse(
        "tls",
        {
            "Statement": {
                "Effect": "Deny",
                "Action": "s3:*",
                "Resource": [BUCKET, f"{BUCKET}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        },
    )
    ps = [policy(ALLOW_GET), deny_plain]
    assert decide(ps, "s3:GetObject", f"{BUCKET}/a", **{"aws:SecureTransport": True}) == "Allow"
    assert decide(ps, "s3:GetObject", f"{BUCKET}/a", **{"aws:SecureTransport": False}) == "ExplicitDeny"


def test_if_exists_passes_when_the_key_is_missing_and_checks_it_when_present() -> None:
    p = policy({**ALLOW_GET, "Condition": {"StringEqualsIfExists": {"s3:prefix": "home/"}}})
    assert decide(p, "s3:GetObject", f"{BUCKET}/a") == "Allow"
    assert decide(p, "s3:GetObject", f"{BUCKET}/a", **{"s3:prefix": "home/"}) == "Allow"
    assert decide(p, "s3:GetObject", f"{BUCKET}/a", **{"s3:prefix": "etc/"}) == "ImplicitDeny"


def test_null_tests_presence() -> None:
    must_have = policy({**ALLOW_GET, "Condition": {"Null": {"aws:TokenIssueTime": "false"}}})
    assert decide(must_have, "s3:GetObject", f"{BUCKET}/a") == "ImplicitDeny"
    assert decide(must_have, "s3:GetObject", f"{BUCKET}/a", **{"aws:TokenIssueTime": "2026-01-01T00:00:00Z"}) == "Allow"


def test_for_all_values_holds_for_an_empty_key_for_any_value_does_not() -> None:
    keys = {"dynamodb:LeadingKeys": ["DEVICE#*"]}
    all_device = policy({**ALLOW_GET, "Condition": {"ForAllValues:StringLike": keys}})
    any_device = policy({**ALLOW_GET, "Condition": {"ForAnyValue:StringLike": keys}})
    leading = "dynamodb:LeadingKeys"
    assert decide(all_device, "s3:GetObject", f"{BUCKET}/a", **{leading: ["DEVICE#1", "DEVICE#2"]}) == "Allow"
    assert decide(all_device, "s3:GetObject", f"{BUCKET}/a", **{leading: ["DEVICE#1", "MODEL#2"]}) == "ImplicitDeny"
    assert decide(all_device, "s3:GetObject", f"{BUCKET}/a") == "Allow"
    assert decide(any_device, "s3:GetObject", f"{BUCKET}/a", **{leading: ["MODEL#2", "DEVICE#1"]}) == "Allow"
    assert decide(any_device, "s3:GetObject", f"{BUCKET}/a") == "ImplicitDeny"


def test_arn_equals_and_like_compare_arns() -> None:
    role = "arn:aws:iam::123456789012:role/loupe-sm"
    p = policy({**ALLOW_GET, "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/loupe-*"}}})
    assert decide(p, "s3:GetObject", f"{BUCKET}/a", **{"aws:PrincipalArn": role}) == "Allow"
    assert decide(p, "s3:GetObject", f"{BUCKET}/a", **{"aws:PrincipalArn": role.replace("loupe", "x")}) == (
        "ImplicitDeny"
    )
    exact = policy({**ALLOW_GET, "Condition": {"ArnEquals": {"aws:SourceArn": role}}})
    assert decide(exact, "s3:GetObject", f"{BUCKET}/a", **{"aws:SourceArn": role}) == "Allow"


def test_policy_variables_in_resources() -> None:
    p = policy(
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{BUCKET}/raw/${{credentials-iot:ThingName}}/*"}
    )
    assert decide(p, "s3:PutObject", f"{BUCKET}/raw/dev-1/a", **{"credentials-iot:ThingName": "dev-1"}) == "Allow"
    assert decide(p, "s3:PutObject", f"{BUCKET}/raw/dev-2/a", **{"credentials-iot:ThingName": "dev-1"}) == (
        "ImplicitDeny"
    )
    # a missing variable never matches (rather than matching the literal text)
    assert decide(p, "s3:PutObject", f"{BUCKET}/raw/${{credentials-iot:ThingName}}/a") == "ImplicitDeny"
    star = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/literal${{*}}"})
    assert decide(star, "s3:GetObject", f"{BUCKET}/literal*") == "Allow"
    assert decide(star, "s3:GetObject", f"{BUCKET}/literalX") == "ImplicitDeny"


def test_policy_variables_are_literal_text_in_a_policy_without_the_2012_version() -> None:
    statement = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{BUCKET}/raw/${{aws:username}}/*"}
    old = Policy.parse("old", {"Statement": [statement]})  # no Version: 2008-10-17
    ctx = {"aws:username": "alice"}
    assert decide(old, "s3:PutObject", f"{BUCKET}/raw/alice/a", **ctx) == "ImplicitDeny"
    assert decide(old, "s3:PutObject", f"{BUCKET}/raw/${{aws:username}}/a", **ctx) == "Allow"
    assert decide(policy(statement), "s3:PutObject", f"{BUCKET}/raw/alice/a", **ctx) == "Allow"


@pytest.mark.parametrize("operator", ["StringEqualz", "IpAddress", "ForSomeValues:StringLike", "NullIfExists"])
def test_an_unknown_operator_is_an_error_naming_it_never_an_allow(operator: str) -> None:
    with pytest.raises(PolicyError, match=operator.split(":")[0]):
        policy({**ALLOW_GET, "Condition": {operator: {"aws:SourceIp": "10.0.0.0/8"}}})


def test_a_statement_needs_one_action_element_and_one_resource_element() -> None:
    with pytest.raises(PolicyError, match="Action"):
        policy({"Effect": "Allow", "Resource": "*"})
    with pytest.raises(PolicyError, match="Resource"):
        policy({"Effect": "Allow", "Action": "s3:*"})
    with pytest.raises(PolicyError, match="Effect"):
        policy({"Effect": "allow", "Action": "s3:*", "Resource": "*"})


def test_a_call_with_several_authorizations_needs_every_one() -> None:
    p = [policy(ALLOW_GET)]
    copy = [Request("s3:GetObject", f"{BUCKET}/a"), Request("s3:PutObject", f"{BUCKET}/b")]
    assert evaluate_all(p, copy).decision == "ImplicitDeny"
    assert evaluate_all(p, copy[:1]).decision == "Allow"


def test_the_switch_defaults_to_enforce_and_refuses_unknown_values() -> None:
    assert mode({}) == "enforce"
    assert mode({"LOUPE_LOCAL_IAM": "off"}) == "off"
    assert mode({"LOUPE_LOCAL_IAM": "Enforce"}) == "enforce"
    with pytest.raises(ValueError, match="LOUPE_LOCAL_IAM='on'"):
        mode({"LOUPE_LOCAL_IAM": "on"})
