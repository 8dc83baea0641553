"""Software-token MFA in the local Cognito: each user gets a secret of their own and every code is checked against
it (moto 5.2.5 gives every user one built-in secret and accepts any code); a pool that requires MFA (``ON``) signs
a user in only after MFA_SETUP with a verified token; the bot labelers' sign-in (``loupe_local.console.signin``)
answers both challenges as an authenticator app would.

Runs a moto user pool in process (``mock_aws``) with each call offered to the stand-in first, as the local gateway
does; the client side is pycognito's SRP and boto3."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from pycognito.aws_srp import AWSSRP
from support.cognito_standin import console_like_pool

from loupe_local import totp
from loupe_local.console.signin import Authenticator, SignInError, sign_in

REGION = "eu-west-1"


@pytest.fixture
def pools() -> Iterator[dict[str, dict[str, Any]]]:
    # whatever the environment says, moto itself checks no code: the stand-in does
    with mock.patch.dict(os.environ, {"MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP": "false"}), mock_aws():
        yield {mfa: console_like_pool(REGION, f"mfa-{mfa}", mfa) for mfa in ("ON", "OPTIONAL")}


def _invited(pool: dict[str, Any]) -> tuple[str, str]:
    email, temporary = f"mfa-{uuid.uuid4().hex[:8]}@example.com", f"Aa1!{uuid.uuid4().hex}"
    pool["idp"].admin_create_user(
        UserPoolId=pool["pool"],
        Username=email,
        TemporaryPassword=temporary,
        UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
        MessageAction="SUPPRESS",
    )
    return email, temporary


def _sign_in(pool: dict[str, Any], email: str, password: str, **kwargs: Any) -> dict[str, Any]:
    return sign_in(pool["api"], pool["pool"], pool["client"], email, password, **kwargs)


def _code_error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]


def _at_mfa_setup(pool: dict[str, Any], email: str, temporary: str) -> dict[str, Any]:
    """An invited user's first sign-in up to Cognito's MFA_SETUP challenge (SRP, then a new password)."""
    api = pool["api"]
    srp = AWSSRP(username=email, password=temporary, pool_id=pool["pool"], client_id=pool["client"], client=api)
    params = srp.get_auth_params()
    challenge = api.initiate_auth(ClientId=pool["client"], AuthFlow="USER_SRP_AUTH", AuthParameters=params)
    claim = srp.process_challenge(challenge["ChallengeParameters"], params)
    answered = api.respond_to_auth_challenge(
        ClientId=pool["client"],
        ChallengeName="PASSWORD_VERIFIER",
        Session=challenge["Session"],
        ChallengeResponses=claim,
    )
    assert answered["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    answered = api.respond_to_auth_challenge(
        ClientId=pool["client"],
        ChallengeName="NEW_PASSWORD_REQUIRED",
        Session=answered["Session"],
        ChallengeResponses={"USERNAME": email, "NEW_PASSWORD": f"Aa1!{uuid.uuid4().hex}"},
    )
    assert answered["ChallengeName"] == "MFA_SETUP", answered
    return answered


def test_a_pool_that_requires_mfa_signs_a_bot_in_after_it_sets_up_its_authenticator(
    pools: dict[str, dict[str, Any]],
) -> None:
    pool = pools["ON"]
    email, temporary = _invited(pool)
    chosen = f"Aa1!{uuid.uuid4().hex}"
    # without an authenticator the sign-in stops at MFA_SETUP: nothing signs the user in
    with pytest.raises(SignInError, match="MFA_SETUP"):
        _sign_in(pool, email, temporary, new_password=chosen)
    app = Authenticator(device_name="bot")
    tokens = _sign_in(pool, email, chosen, authenticator=app)
    assert app.secret is not None
    assert pool["idp"].get_user(AccessToken=tokens["AccessToken"])["Username"]
    # later sign-ins: the code of the secret set up then
    again = _sign_in(pool, email, chosen, authenticator=Authenticator(secret=app.secret))
    assert "AccessToken" in again
    # and of no other secret: moto's built-in one included
    from moto.cognitoidp.models import COGNITO_TOTP_MFA_SECRET

    for other in (totp.new_secret(), COGNITO_TOTP_MFA_SECRET):
        with pytest.raises(ClientError) as refused:
            _sign_in(pool, email, chosen, authenticator=Authenticator(secret=other))
        assert _code_error(refused) == ("CodeMismatchException", "Invalid code received for user")


def test_each_user_gets_a_secret_of_their_own_and_a_wrong_code_does_not_enable_it(
    pools: dict[str, dict[str, Any]],
) -> None:
    pool = pools["OPTIONAL"]
    api = pool["api"]
    secrets, access = [], []
    for _ in range(2):
        email, temporary = _invited(pool)
        tokens = _sign_in(pool, email, temporary, new_password=f"Aa1!{uuid.uuid4().hex}")
        access.append(tokens["AccessToken"])
        secrets.append(api.associate_software_token(AccessToken=tokens["AccessToken"])["SecretCode"])
    assert secrets[0] != secrets[1]
    with pytest.raises(ClientError) as refused:  # the other user's code
        api.verify_software_token(AccessToken=access[0], UserCode=totp.code(secrets[1]), FriendlyDeviceName="p")
    assert _code_error(refused) == (
        "EnableSoftwareTokenMFAException",
        "Code mismatch and fail enable Software Token MFA",
    )
    with pytest.raises(ClientError):  # a preference for a token never verified: moto refuses it
        pool["idp"].set_user_mfa_preference(
            AccessToken=access[0], SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True}
        )
    verified = api.verify_software_token(AccessToken=access[0], UserCode=totp.code(secrets[0]), FriendlyDeviceName="p")
    assert verified["Status"] == "SUCCESS"
    assert pool["standin"].status()["codes_refused"] == 1


def test_an_optional_mfa_user_with_a_token_is_asked_for_its_code_and_a_wrong_one_is_refused(
    pools: dict[str, dict[str, Any]],
) -> None:
    pool = pools["OPTIONAL"]
    api = pool["api"]
    email, temporary = _invited(pool)
    chosen = f"Aa1!{uuid.uuid4().hex}"
    tokens = _sign_in(pool, email, temporary, new_password=chosen)
    secret = api.associate_software_token(AccessToken=tokens["AccessToken"])["SecretCode"]
    api.verify_software_token(AccessToken=tokens["AccessToken"], UserCode=totp.code(secret), FriendlyDeviceName="p")
    pool["idp"].set_user_mfa_preference(
        AccessToken=tokens["AccessToken"], SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True}
    )
    with pytest.raises(SignInError, match="SOFTWARE_TOKEN_MFA"):  # no authenticator: no tokens
        _sign_in(pool, email, chosen)
    with pytest.raises(ClientError) as refused:  # an authenticator with another secret: a wrong code
        _sign_in(pool, email, chosen, authenticator=Authenticator(secret=totp.new_secret()))
    assert _code_error(refused) == ("CodeMismatchException", "Invalid code received for user")
    assert "IdToken" in _sign_in(pool, email, chosen, authenticator=Authenticator(secret=secret))


def test_mfa_setup_without_a_verified_token_signs_nobody_in(pools: dict[str, dict[str, Any]]) -> None:
    """Answering MFA_SETUP straight away (moto would issue tokens), or after a code that did not verify, is
    refused: the challenge's session leads only to AssociateSoftwareToken and VerifySoftwareToken."""
    pool = pools["ON"]
    api = pool["api"]
    email, temporary = _invited(pool)
    setup = _at_mfa_setup(pool, email, temporary)

    def answer(session: str) -> None:
        api.respond_to_auth_challenge(
            ClientId=pool["client"], ChallengeName="MFA_SETUP", Session=session, ChallengeResponses={"USERNAME": email}
        )

    with pytest.raises(ClientError) as refused:
        answer(setup["Session"])
    assert _code_error(refused) == ("NotAuthorizedException", "Invalid session for the user.")
    associated = api.associate_software_token(Session=setup["Session"])
    with pytest.raises(ClientError):
        api.verify_software_token(Session=associated["Session"], UserCode="000000", FriendlyDeviceName="p")
    with pytest.raises(ClientError) as refused:
        answer(associated["Session"])
    assert _code_error(refused) == ("NotAuthorizedException", "Invalid session for the user.")
    verified = api.verify_software_token(
        Session=associated["Session"], UserCode=totp.code(associated["SecretCode"]), FriendlyDeviceName="p"
    )
    tokens = api.respond_to_auth_challenge(
        ClientId=pool["client"],
        ChallengeName="MFA_SETUP",
        Session=verified["Session"],
        ChallengeResponses={"USERNAME": email},
    )["AuthenticationResult"]
    assert pool["idp"].get_user(AccessToken=tokens["AccessToken"])["Username"]
