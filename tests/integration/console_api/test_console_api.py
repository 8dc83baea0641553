"""The console API behind the local HTTP API: Cognito users by group, the JWT authorizer (401), the handler's group
checks (403), an approver's approval recorded in the package and reaching the edge deployment path."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.console_users import api, signed_in
from support.deploy_packages import register_package
from support.waiting import wait_for

from loupe_local.standins.httpapi.service import HttpApis


def _apis(local_aws: Any) -> HttpApis:
    return next(s for s in local_aws.standins if isinstance(s, HttpApis))


@pytest.fixture(scope="module")
def base(local_aws: Any) -> str:
    return _apis(local_aws).urls["ConsoleApi"]


@pytest.fixture(scope="module")
def users(local_aws: Any) -> dict[str, dict[str, str]]:
    return {group: signed_in(local_aws, group) for group in ("labelers", "approvers")}


def _version(package: dict[str, Any]) -> str:
    return package["arn"].rsplit("/", 1)[-1]


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["cognito:groups"] = ["approvers"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_every_route_needs_a_valid_token(base: str, users: dict[str, dict[str, str]]) -> None:
    for method, path in (("GET", "/me"), ("GET", "/models"), ("POST", "/models/1/approval")):
        status, _, body = api(f"{base}{path}", method, body={} if method == "POST" else None)
        assert (status, body) == (401, {"message": "Unauthorized"}), (path, status, body)
    # a labeler's token with "approvers" written into it: the signature no longer matches
    status, _, body = api(f"{base}/me", token=_tampered(users["labelers"]["id"]))
    assert (status, body) == (401, {"message": "Unauthorized"})
    assert api(f"{base}/me", token="not.a.jwt")[0] == 401


def test_an_expired_token_is_refused(local_aws: Any, base: str, users: dict[str, dict[str, str]]) -> None:
    authorizer = _apis(local_aws).servers["ConsoleApi"].authorizers["ConsoleUsers"]
    assert api(f"{base}/me", token=users["labelers"]["id"])[0] == 200
    clock = authorizer.clock
    authorizer.clock = lambda: time.time() + 2 * 3600  # two hours on: past the 60-minute token's exp
    try:
        status, _, body = api(f"{base}/me", token=users["labelers"]["id"])
    finally:
        authorizer.clock = clock
    assert (status, body) == (401, {"message": "Unauthorized"})


def test_me_names_the_caller_and_groups(base: str, users: dict[str, dict[str, str]]) -> None:
    for group, user in users.items():
        status, _, body = api(f"{base}/me", token=user["id"])
        assert status == 200, body
        assert body["email"] == user["email"] and body["groups"] == [group]
    # the access token is accepted too (client_id instead of aud)
    status, _, body = api(f"{base}/me", token=users["approvers"]["access"])
    assert status == 200 and body["groups"] == ["approvers"], body


def test_a_labeler_cannot_approve(local_aws: Any, base: str, users: dict[str, dict[str, str]]) -> None:
    package = register_package(local_aws)
    status, _, body = api(
        f"{base}/models/{_version(package)}/approval", "POST", users["labelers"]["id"], {"decision": "Approved"}
    )
    assert status == 403 and "approvers" in body["message"], body
    desc = local_aws.client("sagemaker").describe_model_package(ModelPackageName=package["arn"])
    assert desc["ModelApprovalStatus"] == "PendingManualApproval"


def test_an_approver_approves_and_the_deployment_starts(
    local_aws: Any, base: str, users: dict[str, dict[str, str]]
) -> None:
    approver = users["approvers"]
    package = register_package(local_aws)
    status, _, listed = api(f"{base}/models", token=approver["id"])
    assert status == 200 and any(p["arn"] == package["arn"] for p in listed["packages"]), listed
    status, _, body = api(
        f"{base}/models/{_version(package)}/approval",
        "POST",
        approver["id"],
        {"decision": "Approved", "reason": "gate passed, checked the samples"},
    )
    assert status == 200, body
    desc = local_aws.client("sagemaker").describe_model_package(ModelPackageName=package["arn"])
    assert desc["ModelApprovalStatus"] == "Approved"
    assert desc["ApprovalDescription"] == f"Approved by {approver['email']}: gate passed, checked the samples"
    # the approval takes the existing path: the state change event starts the edge deployment of this package
    sfn = local_aws.client("stepfunctions")
    machine = local_aws.physical("EdgeDeploymentStateMachine")

    def started() -> bool:
        for execution in sfn.list_executions(stateMachineArn=machine)["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if package["arn"] in described.get("input", ""):
                return True
        return False

    wait_for(started, 60, "the edge deployment of the approved package")
    # approving it again is a conflict, not a second deployment
    again = api(f"{base}/models/{_version(package)}/approval", "POST", approver["id"], {"decision": "Approved"})
    assert again[0] == 409 and "already Approved" in again[2]["message"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/models/999999/approval", {"decision": "Approved"}, 404),
        ("/models/abc/approval", {"decision": "Approved"}, 404),
        ("/models/1/approval", {"decision": "Maybe"}, 400),
        ("/models/1/approval", {"decision": "Approved", "extra": 1}, 400),
        ("/models/1/approval", b"not json", 400),
    ],
)
def test_bad_approvals_are_refused_with_a_message(
    base: str, users: dict[str, dict[str, str]], path: str, body: Any, status: int
) -> None:
    got, _, answer = api(f"{base}{path}", "POST", users["approvers"]["id"], body)
    assert got == status and answer["message"], answer


def test_no_cors_grant_for_a_foreign_origin(base: str, users: dict[str, dict[str, str]]) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    status, headers, _ = api(f"{base}/models/1/approval", "OPTIONS", headers=preflight)
    assert "access-control-allow-origin" not in headers, (status, headers)
    status, headers, _ = api(f"{base}/me", token=users["labelers"]["id"], headers={"Origin": "https://evil.example"})
    assert status == 200 and "access-control-allow-origin" not in headers


def test_a_client_refuses_the_sign_in_flows_it_does_not_allow(local_aws: Any, users: dict[str, dict[str, str]]) -> None:
    """The deployed client allows SRP only (ConsolePasswordSignIn=false, the default); Cognito refuses a password
    sign-in there with InvalidParameterException. The local stack enforces it as Cognito does."""
    idp = local_aws.client("cognito-idp")
    pool = local_aws.physical("ConsoleUserPool")
    srp_only = idp.create_user_pool_client(
        UserPoolId=pool, ClientName="srp-only", ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    )["UserPoolClient"]["ClientId"]
    user = users["labelers"]
    with pytest.raises(ClientError) as refused:
        idp.initiate_auth(
            ClientId=srp_only,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": user["email"], "PASSWORD": user["password"]},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "USER_PASSWORD_AUTH flow not enabled" in refused.value.response["Error"]["Message"]
    # the flow it allows goes on to Cognito (moto issues the SRP challenge)
    challenge = idp.initiate_auth(
        ClientId=srp_only, AuthFlow="USER_SRP_AUTH", AuthParameters={"USERNAME": user["email"], "SRP_A": "ab" * 64}
    )
    assert challenge["ChallengeName"] == "PASSWORD_VERIFIER"


def test_who_approved_survives_a_later_update_of_the_package(local_aws: Any) -> None:
    """SageMaker keeps ApprovalDescription when an UpdateModelPackage does not set it (moto erased it)."""
    package = register_package(local_aws)
    sm = local_aws.client("sagemaker")
    sm.update_model_package(
        ModelPackageArn=package["arn"], ModelApprovalStatus="Rejected", ApprovalDescription="Rejected by ann"
    )
    sm.update_model_package(ModelPackageArn=package["arn"], CustomerMetadataProperties={"note": "kept"})
    desc = sm.describe_model_package(ModelPackageName=package["arn"])
    assert desc["ApprovalDescription"] == "Rejected by ann" and desc["ModelApprovalStatus"] == "Rejected"
    assert desc["CustomerMetadataProperties"]["note"] == "kept"
