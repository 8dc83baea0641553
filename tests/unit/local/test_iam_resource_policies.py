"""Resource-based policies, evaluated as the IAM User Guide documents them (issue 19): Principal / NotPrincipal
matching, a service principal granted only by the resource policy (with aws:SourceArn / aws:SourceAccount), the
same-account rule (an Allow in the identity OR the resource policy grants, an explicit Deny in either wins), and
the usage record of a service's delivery."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loupe_local.iam.evaluate import (
    Caller,
    Policy,
    PolicyError,
    Request,
    ResourcePolicy,
    evaluate_with_resource_policy,
)
from loupe_local.iam.resource_policies import ServiceDelivery, service_context

ACCOUNT = "123456789012"
FN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:fn"
RULE = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/r1"
OTHER_RULE = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/r2"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:q"
BUCKET = "arn:aws:s3:::b"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/r"
SESSION = Caller(ACCOUNT, arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/r/s", role_arn=ROLE)
OTHER = Caller(ACCOUNT, arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/o/s", role_arn=f"arn:aws:iam::{ACCOUNT}:role/o")
EVENTS = Caller(ACCOUNT, service="events.amazonaws.com")
IOT = Caller(ACCOUNT, service="iot.amazonaws.com")


def function_policy(principal: str, source_arn: str | None = None) -> ResourcePolicy:
    """What Lambda's AddPermission writes (Principal service, ArnLike AWS:SourceArn, StringEquals SourceAccount)."""
    condition: dict[str, Any] = {"StringEquals": {"AWS:SourceAccount": ACCOUNT}}
    if source_arn:
        condition["ArnLike"] = {"AWS:SourceArn": source_arn}
    statement = {
        "Sid": "p",
        "Effect": "Allow",
        "Principal": {"Service": principal},
        "Action": "lambda:InvokeFunction",
        "Resource": FN,
        "Condition": condition,
    }
    return ResourcePolicy.parse("fn", {"Version": "2012-10-17", "Statement": [statement]})


def service_request(action: str, resource: str, source: str) -> Request:
    return Request(action, resource, service_context(source, ACCOUNT, "us-east-1"))


def test_a_service_is_granted_only_by_a_statement_naming_it_for_the_right_source() -> None:
    policy = function_policy("events.amazonaws.com", RULE)
    allowed, by = evaluate_with_resource_policy((), policy, service_request("lambda:InvokeFunction", FN, RULE), EVENTS)
    assert (allowed.decision, by) == ("Allow", "resource")
    # another rule of the same account, another service, no policy at all: implicit deny
    for caller, source, pol in ((EVENTS, OTHER_RULE, policy), (IOT, RULE, policy), (EVENTS, RULE, None)):
        result, _ = evaluate_with_resource_policy((), pol, service_request("lambda:InvokeFunction", FN, source), caller)
        assert result.decision == "ImplicitDeny"


def test_a_service_principal_has_no_identity_policy_to_fall_back_on() -> None:
    everything = Policy.parse("admin", {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    result, _ = evaluate_with_resource_policy(
        [everything], None, service_request("sqs:SendMessage", QUEUE, RULE), EVENTS
    )
    assert result.decision == "ImplicitDeny"


@pytest.mark.parametrize(
    ("principal", "caller", "named"),
    [
        ("*", SESSION, True),
        ({"AWS": "*"}, SESSION, True),
        ({"AWS": "*"}, EVENTS, True),
        ({"AWS": ROLE}, SESSION, True),
        ({"AWS": ROLE}, OTHER, False),
        ({"AWS": [SESSION.arn]}, SESSION, True),
        ({"Service": "events.amazonaws.com"}, EVENTS, True),
        ({"Service": "events.amazonaws.com"}, SESSION, False),
        ({"AWS": ROLE}, EVENTS, False),
    ],
)
def test_principal_forms_name_who_they_document(principal: Any, caller: Caller, named: bool) -> None:
    policy = ResourcePolicy.parse(
        "q",
        {"Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sqs:SendMessage", "Resource": QUEUE}]},
    )
    result, _ = evaluate_with_resource_policy((), policy, Request("sqs:SendMessage", QUEUE), caller)
    assert result.allowed is named


def test_an_account_principal_delegates_to_the_identity_policies() -> None:
    """Principal {"AWS": account} or its :root ARN grants the account, whose identity policies then decide."""
    for principal in (ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root"):
        policy = ResourcePolicy.parse(
            "q",
            {"Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sqs:*", "Resource": "*"}]},
        )
        result, _ = evaluate_with_resource_policy((), policy, Request("sqs:SendMessage", QUEUE), SESSION)
        assert result.decision == "ImplicitDeny"


def test_not_principal_names_everyone_else() -> None:
    policy = ResourcePolicy.parse(
        "b",
        {"Statement": [{"Effect": "Deny", "NotPrincipal": {"AWS": ROLE}, "Action": "s3:*", "Resource": f"{BUCKET}/*"}]},
    )
    grant = Policy.parse("id", {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
    request = Request("s3:GetObject", f"{BUCKET}/k")
    assert evaluate_with_resource_policy([grant], policy, request, SESSION)[0].decision == "Allow"
    assert evaluate_with_resource_policy([grant], policy, request, OTHER)[0].decision == "ExplicitDeny"


def test_same_account_allow_in_either_and_explicit_deny_in_either_wins() -> None:
    grant = Policy.parse("id", {"Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]})
    deny_id = Policy.parse("id", {"Statement": [{"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"}]})

    def bucket(effect: str) -> ResourcePolicy:
        statement = {"Effect": effect, "Principal": {"AWS": ROLE}, "Action": "s3:PutObject", "Resource": f"{BUCKET}/*"}
        return ResourcePolicy.parse("b", {"Statement": [statement]})

    request = Request("s3:PutObject", f"{BUCKET}/k")
    assert evaluate_with_resource_policy([grant], None, request, SESSION)[1] == "identity"
    assert evaluate_with_resource_policy([], bucket("Allow"), request, SESSION)[1] == "resource"
    assert evaluate_with_resource_policy([], bucket("Allow"), request, SESSION)[0].allowed
    refused, by = evaluate_with_resource_policy([grant], bucket("Deny"), request, SESSION)
    assert (refused.decision, by) == ("ExplicitDeny", "resource")
    refused, by = evaluate_with_resource_policy([deny_id], bucket("Allow"), request, SESSION)
    assert (refused.decision, by) == ("ExplicitDeny", "identity")


def test_the_template_tls_deny_refuses_plain_http_only() -> None:
    policy = ResourcePolicy.parse(
        "b",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [BUCKET, f"{BUCKET}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        },
    )
    grant = Policy.parse("id", {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
    tls = Request("s3:GetObject", f"{BUCKET}/k", {"aws:SecureTransport": True})
    plain = Request("s3:GetObject", f"{BUCKET}/k", {"aws:SecureTransport": False})
    assert evaluate_with_resource_policy([grant], policy, tls, SESSION)[0].allowed
    assert evaluate_with_resource_policy([grant], policy, plain, SESSION)[0].decision == "ExplicitDeny"


def test_a_resource_statement_without_a_principal_is_refused_when_parsed() -> None:
    with pytest.raises(PolicyError, match="Principal"):
        ResourcePolicy.parse("q", {"Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]})


def test_a_refused_delivery_is_recorded_and_held_back_only_in_enforce() -> None:
    records: list[dict[str, Any]] = []
    policies = {FN: {"Version": "2012-10-17", "Statement": []}}
    for mode, goes in (("audit", True), ("enforce", False)):
        check = ServiceDelivery(records.extend, mode, ACCOUNT, "us-east-1", {FN: "Fn"}, policies.get)
        assert check.allows("events.amazonaws.com", "lambda:InvokeFunction", f"{FN}:live", RULE) is goes
    assert [r["decision"] for r in records] == ["ImplicitDeny", "ImplicitDeny"]
    record = records[0]
    assert record["principal"] == "events.amazonaws.com"
    assert record["check"] == "resource-policy"
    assert record["source"] == RULE
    assert record["stack_resource"] == "Fn"  # the alias of a stack function is the stack's


def test_a_granted_delivery_is_recorded_as_allowed() -> None:
    records: list[dict[str, Any]] = []
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": QUEUE,
        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
    }
    policies = {QUEUE: {"Version": "2012-10-17", "Statement": [statement]}}
    check = ServiceDelivery(records.extend, "enforce", ACCOUNT, "us-east-1", {}, policies.get)
    assert check.allows("events.amazonaws.com", "sqs:SendMessage", QUEUE, RULE)
    assert records[0]["decision"] == "Allow" and records[0]["stack_resource"] is None


def test_the_report_lists_a_services_refused_delivery_under_the_service(tmp_path: Any) -> None:
    from loupe_local.iam.audit import USAGE_FILE
    from loupe_local.iam.report import build

    records: list[dict[str, Any]] = []
    check = ServiceDelivery(records.extend, "audit", ACCOUNT, "us-east-1", {}, {}.get)
    check.allows("iot.amazonaws.com", "lambda:InvokeFunction", FN, f"arn:aws:iot:us-east-1:{ACCOUNT}:rule/r")
    (tmp_path / USAGE_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    (report,) = build(tmp_path)
    assert report.role == "iot.amazonaws.com"
    assert report.would_deny == 1 and "lambda:InvokeFunction" in report.denied
