"""Sign-in to the local stack's console pool as the browser does it: SRP, unsigned, through the local endpoint.

The stack's app client runs the cloud's default (``ConsolePasswordSignIn=false``: SRP only); the local Cognito checks
the password proof as Cognito does (moto alone signs in any PASSWORD_CLAIM_SIGNATURE).
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from pycognito.aws_srp import AWSSRP
from support.console_users import api, password, signed_in

from loupe_local.console.signin import sign_in
from loupe_local.standins.httpapi.service import HttpApis


@pytest.fixture(scope="module")
def browser_idp(local_aws: Any) -> Any:
    """A Cognito client that signs nothing, as a web page's is (sign-in needs no AWS credential)."""
    return boto3.client(
        "cognito-idp",
        region_name=local_aws.region,
        endpoint_url=local_aws.endpoint,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def person(local_aws: Any) -> dict[str, str]:
    return signed_in(local_aws, "labelers")  # invited, first sign-in by SRP with NEW_PASSWORD_REQUIRED answered


def _ids(local_aws: Any) -> tuple[str, str]:
    return local_aws.physical("ConsoleUserPool"), local_aws.physical("ConsoleUserPoolClient")


def _refused(exc: pytest.ExceptionInfo[ClientError]) -> None:
    assert exc.value.response["Error"]["Code"] == "NotAuthorizedException", exc.value.response
    assert exc.value.response["Error"]["Message"] == "Incorrect username or password."


def test_the_stack_client_allows_srp_only(local_aws: Any, browser_idp: Any, person: dict[str, str]) -> None:
    assert local_aws.parameter_values["ConsolePasswordSignIn"] == "false"
    with pytest.raises(ClientError) as refused:
        browser_idp.initiate_auth(
            ClientId=_ids(local_aws)[1],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": person["email"], "PASSWORD": person["password"]},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"


def test_the_right_password_signs_in_and_the_api_accepts_the_token(
    local_aws: Any, browser_idp: Any, person: dict[str, str]
) -> None:
    pool, client = _ids(local_aws)
    tokens = sign_in(browser_idp, pool, client, person["email"], person["password"])
    base = next(s for s in local_aws.standins if isinstance(s, HttpApis)).urls["ConsoleApi"]
    status, _, me = api(f"{base}/me", token=tokens["IdToken"])
    assert status == 200 and me["email"] == person["email"] and me["groups"] == ["labelers"], me


def test_a_wrong_password_is_refused(local_aws: Any, browser_idp: Any, person: dict[str, str]) -> None:
    pool, client = _ids(local_aws)
    with pytest.raises(ClientError) as refused:
        sign_in(browser_idp, pool, client, person["email"], password())
    _refused(refused)


def test_an_unknown_user_is_refused_the_same_way(local_aws: Any, browser_idp: Any) -> None:
    pool, client = _ids(local_aws)
    with pytest.raises(ClientError) as refused:
        sign_in(browser_idp, pool, client, f"nobody-{uuid.uuid4().hex[:8]}@example.com", password())
    _refused(refused)


def test_a_replayed_or_tampered_claim_is_refused(local_aws: Any, browser_idp: Any, person: dict[str, str]) -> None:
    pool, client = _ids(local_aws)

    def claim() -> dict[str, str]:
        srp = AWSSRP(
            username=person["email"], password=person["password"], pool_id=pool, client_id=client, client=browser_idp
        )
        parameters = srp.get_auth_params()
        challenge = browser_idp.initiate_auth(ClientId=client, AuthFlow="USER_SRP_AUTH", AuthParameters=parameters)
        return srp.process_challenge(challenge["ChallengeParameters"], parameters)

    def respond(responses: dict[str, str]) -> dict[str, Any]:
        return browser_idp.respond_to_auth_challenge(
            ClientId=client, ChallengeName="PASSWORD_VERIFIER", ChallengeResponses=responses
        )

    good = claim()
    assert "AuthenticationResult" in respond(good)
    with pytest.raises(ClientError) as replayed:
        respond(good)
    _refused(replayed)
    other = claim()
    signature = other["PASSWORD_CLAIM_SIGNATURE"]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(ClientError) as tampered:
        respond({**other, "PASSWORD_CLAIM_SIGNATURE": flipped})
    _refused(tampered)
