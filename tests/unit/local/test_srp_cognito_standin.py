"""The Cognito stand-in checks an SRP sign-in as Cognito does (moto 5.2.5 signs in any PASSWORD_CLAIM_SIGNATURE).

The client side is pycognito's ``AWSSRP`` (an implementation independent of the stand-in's server side), talking to
a moto user pool through the stand-in the way the local gateway routes a request: the stand-in answers what it
claims, moto the rest.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from pycognito.aws_srp import AWSSRP
from support.cognito_standin import ThroughStandIn, console_like_pool

from loupe_local.standins.cognito.service import CognitoFlows

REGION = "eu-west-1"


@pytest.fixture
def pool() -> Iterator[dict[str, Any]]:
    with mock_aws():
        yield console_like_pool(REGION, "srp")


def _user(pool: dict[str, Any], confirmed: bool = True) -> tuple[str, str]:
    email, password = f"srp-{uuid.uuid4().hex[:8]}@example.com", f"Aa1!{uuid.uuid4().hex}"
    pool["idp"].admin_create_user(
        UserPoolId=pool["pool"],
        Username=email,
        TemporaryPassword=password,
        UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
        MessageAction="SUPPRESS",
    )
    if confirmed:
        pool["idp"].admin_set_user_password(UserPoolId=pool["pool"], Username=email, Password=password, Permanent=True)
    return email, password


def _srp(pool: dict[str, Any], email: str, password: str) -> AWSSRP:
    return AWSSRP(username=email, password=password, pool_id=pool["pool"], client_id=pool["client"], client=pool["api"])


def _refused(exc: pytest.ExceptionInfo[ClientError]) -> None:
    assert exc.value.response["Error"]["Code"] == "NotAuthorizedException", exc.value.response
    assert exc.value.response["Error"]["Message"] == "Incorrect username or password."


def _claim(pool: dict[str, Any], email: str, password: str) -> tuple[AWSSRP, dict[str, str], dict[str, str]]:
    """InitiateAuth and the answer pycognito computes (not sent): the challenge, the claim."""
    srp = _srp(pool, email, password)
    params = srp.get_auth_params()
    challenge = pool["api"].initiate_auth(ClientId=pool["client"], AuthFlow="USER_SRP_AUTH", AuthParameters=params)
    assert challenge["ChallengeName"] == "PASSWORD_VERIFIER"
    return srp, challenge["ChallengeParameters"], srp.process_challenge(challenge["ChallengeParameters"], params)


def _respond(pool: dict[str, Any], claim: dict[str, str]) -> dict[str, Any]:
    return pool["api"].respond_to_auth_challenge(
        ClientId=pool["client"], ChallengeName="PASSWORD_VERIFIER", ChallengeResponses=claim
    )


def test_the_right_password_signs_in_with_srp(pool: dict[str, Any]) -> None:
    email, password = _user(pool)
    tokens = _srp(pool, email, password).authenticate_user()["AuthenticationResult"]
    me = pool["idp"].get_user(AccessToken=tokens["AccessToken"])
    assert {"Name": "email", "Value": email} in me["UserAttributes"]
    assert pool["standin"].status()["srp_signed_in"] == 1


def test_a_wrong_password_is_refused_as_cognito_refuses_it(pool: dict[str, Any]) -> None:
    """moto alone signs this one in (any signature passes): the failure this stand-in exists for."""
    email, _ = _user(pool)
    with pytest.raises(ClientError) as refused:
        _srp(pool, email, "Aa1!not-the-password").authenticate_user()
    _refused(refused)


def test_an_unknown_user_gets_the_same_refusal_and_a_consistent_challenge(pool: dict[str, Any]) -> None:
    ghost = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    with pytest.raises(ClientError) as refused:
        _srp(pool, ghost, "Aa1!whatever-it-is").authenticate_user()
    _refused(refused)
    # the simulated challenge looks like a real one and stays the same for the same name (asking again tells nothing)
    _, first, _ = _claim(pool, ghost, "x")
    _, second, _ = _claim(pool, ghost, "x")
    assert first["SALT"] == second["SALT"] and first["USER_ID_FOR_SRP"] == second["USER_ID_FOR_SRP"]
    assert first["USERNAME"] == first["USER_ID_FOR_SRP"] and str(uuid.UUID(first["USER_ID_FOR_SRP"])) != ghost
    assert first["SRP_B"] != second["SRP_B"] and first["SECRET_BLOCK"] != second["SECRET_BLOCK"]
    _, real, _ = _claim(pool, *_user(pool))
    assert set(first) == set(real) and len(first["SALT"]) == len(real["SALT"])
    assert uuid.UUID(real["USER_ID_FOR_SRP"]).version == uuid.UUID(first["USER_ID_FOR_SRP"]).version == 4


def test_a_secret_block_answers_once(pool: dict[str, Any]) -> None:
    email, password = _user(pool)
    _, _, claim = _claim(pool, email, password)
    assert "AuthenticationResult" in _respond(pool, claim)
    with pytest.raises(ClientError) as replayed:
        _respond(pool, claim)
    _refused(replayed)


def test_a_wrong_answer_spends_the_secret_block(pool: dict[str, Any]) -> None:
    email, password = _user(pool)
    srp, challenge, claim = _claim(pool, email, password)
    tampered = base64.b64decode(claim["PASSWORD_CLAIM_SIGNATURE"])
    with pytest.raises(ClientError) as refused:
        _respond(
            pool,
            {**claim, "PASSWORD_CLAIM_SIGNATURE": base64.b64encode(bytes([tampered[0] ^ 1]) + tampered[1:]).decode()},
        )
    _refused(refused)
    with pytest.raises(ClientError) as then:  # the genuine claim, too late: the block was used
        _respond(pool, claim)
    _refused(then)


def test_an_unknown_secret_block_is_refused(pool: dict[str, Any]) -> None:
    email, password = _user(pool)
    _, _, claim = _claim(pool, email, password)
    forged = base64.standard_b64encode(os.urandom(96)).decode()
    with pytest.raises(ClientError) as refused:
        _respond(pool, {**claim, "PASSWORD_CLAIM_SECRET_BLOCK": forged})
    _refused(refused)


def test_a_stale_timestamp_is_refused_even_when_signed_right(pool: dict[str, Any]) -> None:
    email, password = _user(pool)
    srp = _srp(pool, email, password)
    params = srp.get_auth_params()
    challenge = pool["api"].initiate_auth(ClientId=pool["client"], AuthFlow="USER_SRP_AUTH", AuthParameters=params)
    hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    stale = AWSSRP.get_cognito_formatted_timestamp(hour_ago)
    srp.get_cognito_formatted_timestamp = lambda _now: stale  # type: ignore[method-assign]
    claim = srp.process_challenge(challenge["ChallengeParameters"], params)
    assert claim["TIMESTAMP"] == stale
    with pytest.raises(ClientError) as refused:
        _respond(pool, claim)
    _refused(refused)


def test_an_invited_user_is_asked_for_a_new_password_through_srp(pool: dict[str, Any]) -> None:
    email, temporary = _user(pool, confirmed=False)
    chosen = f"Aa1!{uuid.uuid4().hex}"
    with pytest.raises(ClientError) as wrong:
        _srp(pool, email, "Aa1!not-the-temporary").set_new_password_challenge(chosen)
    _refused(wrong)
    answered = _srp(pool, email, temporary).set_new_password_challenge(chosen)
    assert "AccessToken" in answered["AuthenticationResult"]
    assert "AuthenticationResult" in _srp(pool, email, chosen).authenticate_user()
    with pytest.raises(ClientError) as old:
        _srp(pool, email, temporary).authenticate_user()
    _refused(old)


def test_the_challenges_session_does_not_skip_the_proof(pool: dict[str, Any]) -> None:
    """moto would set a new password for whoever answers NEW_PASSWORD_REQUIRED with its SRP session: the stand-in
    never shows that session."""
    email, _ = _user(pool, confirmed=False)
    srp = _srp(pool, email, "Aa1!not-the-temporary")
    challenge = pool["api"].initiate_auth(
        ClientId=pool["client"], AuthFlow="USER_SRP_AUTH", AuthParameters=srp.get_auth_params()
    )
    with pytest.raises(ClientError):
        pool["api"].respond_to_auth_challenge(
            ClientId=pool["client"],
            ChallengeName="NEW_PASSWORD_REQUIRED",
            Session=challenge["Session"],
            ChallengeResponses={"USERNAME": email, "NEW_PASSWORD": f"Aa1!{uuid.uuid4().hex}"},
        )
    with pytest.raises(ClientError):
        pool["api"].respond_to_auth_challenge(
            ClientId=pool["client"],
            ChallengeName="NEW_PASSWORD_REQUIRED",
            Session=challenge["ChallengeParameters"]["SECRET_BLOCK"],
            ChallengeResponses={"USERNAME": email, "NEW_PASSWORD": f"Aa1!{uuid.uuid4().hex}"},
        )


def test_password_sign_in_is_refused_when_the_client_allows_only_srp(pool: dict[str, Any]) -> None:
    email, password = _user(pool)
    with pytest.raises(ClientError) as refused:
        pool["api"].initiate_auth(
            ClientId=pool["client"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": email, "PASSWORD": password},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "USER_PASSWORD_AUTH flow not enabled" in refused.value.response["Error"]["Message"]


def test_password_sign_in_does_not_tell_who_exists_either(pool: dict[str, Any]) -> None:
    both = pool["idp"].create_user_pool_client(
        UserPoolId=pool["pool"],
        ClientName="scripts",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"],
        PreventUserExistenceErrors="ENABLED",
    )["UserPoolClient"]["ClientId"]
    for username in (f"nobody-{uuid.uuid4().hex[:8]}@example.com", _user(pool)[0]):
        with pytest.raises(ClientError) as refused:
            pool["api"].initiate_auth(
                ClientId=both, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": username, "PASSWORD": "x"}
            )
        _refused(refused)


def test_a_legacy_client_still_says_the_user_does_not_exist(pool: dict[str, Any]) -> None:
    legacy = pool["idp"].create_user_pool_client(
        UserPoolId=pool["pool"], ClientName="legacy", ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH"]
    )["UserPoolClient"]["ClientId"]
    srp = AWSSRP(username="ghost@example.com", password="x", pool_id=pool["pool"], client_id=legacy, client=pool["api"])
    with pytest.raises(ClientError) as refused:
        srp.authenticate_user()
    assert refused.value.response["Error"]["Code"] == "UserNotFoundException"


@pytest.mark.parametrize("srp_a", ["", "zz-not-hex", "0", None])
def test_a_bad_srp_a_is_refused_with_a_message(pool: dict[str, Any], srp_a: str | None) -> None:
    email, _ = _user(pool)
    from loupe_local.standins.cognito.srp import N_HEX

    value = N_HEX if srp_a is None else srp_a  # A = N: 0 mod N, SRP-6a's forbidden value
    with pytest.raises(ClientError) as refused:
        pool["api"].initiate_auth(
            ClientId=pool["client"], AuthFlow="USER_SRP_AUTH", AuthParameters={"USERNAME": email, "SRP_A": value}
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    assert refused.value.response["Error"]["Message"]


def test_the_new_password_challenge_carries_the_users_attributes_as_cognito_sends_them(pool: dict[str, Any]) -> None:
    """amazon-cognito-identity-js parses userAttributes / requiredAttributes (JSON strings); moto sent neither."""
    email, temporary = _user(pool, confirmed=False)
    _, challenge, claim = _claim(pool, email, temporary)
    answered = _respond(pool, claim)
    assert answered["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    parameters = answered["ChallengeParameters"]
    assert json.loads(parameters["userAttributes"])["email"] == email
    assert "sub" not in json.loads(parameters["userAttributes"])
    assert json.loads(parameters["requiredAttributes"]) == []
    assert parameters["USER_ID_FOR_SRP"] == challenge["USER_ID_FOR_SRP"]


def test_srp_is_refused_where_the_client_does_not_allow_it_and_allowed_by_default(pool: dict[str, Any]) -> None:
    email, password = _user(pool)
    password_only = pool["idp"].create_user_pool_client(
        UserPoolId=pool["pool"], ClientName="pw", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    srp = AWSSRP(username=email, password=password, pool_id=pool["pool"], client_id=password_only, client=pool["api"])
    with pytest.raises(ClientError) as refused:
        srp.authenticate_user()
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "USER_SRP_AUTH flow not enabled" in refused.value.response["Error"]["Message"]
    # a client that names no flows allows SRP, refresh and custom auth (CreateUserPoolClient, ExplicitAuthFlows)
    unnamed = pool["idp"].create_user_pool_client(UserPoolId=pool["pool"], ClientName="default")["UserPoolClient"]
    srp = AWSSRP(
        username=email, password=password, pool_id=pool["pool"], client_id=unnamed["ClientId"], client=pool["api"]
    )
    assert "AuthenticationResult" in srp.authenticate_user()


def test_an_srp_sign_in_is_never_left_to_moto_when_a_lookup_fails(pool: dict[str, Any]) -> None:
    """The stand-in claims USER_SRP_AUTH before any lookup: a failure there must not hand the request to moto."""

    class _Broken:
        def client(self, service: str) -> Any:
            raise RuntimeError("the local endpoint is down")

    standin = CognitoFlows()
    standin.attach(_Broken())  # type: ignore[arg-type]
    email, password = _user(pool)
    api = ThroughStandIn(pool["idp"], standin, REGION)
    wrong = AWSSRP(username=email, password="Aa1!wrong", pool_id=pool["pool"], client_id=pool["client"], client=api)
    with pytest.raises(ClientError) as refused:
        wrong.authenticate_user()
    _refused(refused)
    right = AWSSRP(username=email, password=password, pool_id=pool["pool"], client_id=pool["client"], client=api)
    assert "AuthenticationResult" in right.authenticate_user()


def test_pending_challenges_are_bounded_the_oldest_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    from loupe_local.standins.cognito import srp

    monkeypatch.setattr(srp, "MAX_PENDING", 2)
    server = srp.SrpServer()
    issued = [
        server.challenge(
            pool_id="eu-west-1_Pool",
            client_id="c",
            username="u",
            user_id_for_srp="u",
            srp_a_hex="ab" * 64,
            salt=server.fake_salt("eu-west-1_Pool", "u"),
            v=server.fake_verifier("eu-west-1_Pool", "u"),
            validity_s=180,
        )["SECRET_BLOCK"]
        for _ in range(3)
    ]
    with pytest.raises(srp.SrpRefused, match="unknown, used or expired"):
        server.verify("c", {"PASSWORD_CLAIM_SECRET_BLOCK": issued[0], "USERNAME": "u"})
    with pytest.raises(srp.SrpRefused, match="TIMESTAMP"):  # still known: refused further on
        server.verify("c", {"PASSWORD_CLAIM_SECRET_BLOCK": issued[2], "USERNAME": "u"})


def test_a_challenge_expires_with_the_clients_auth_session_validity(pool: dict[str, Any]) -> None:
    """AuthSessionValidity (3 minutes by default): a right answer after that is refused."""
    import time

    email, password = _user(pool)
    _, _, claim = _claim(pool, email, password)
    pool["standin"].srp._clock = lambda: time.time() + 4 * 60
    with pytest.raises(ClientError) as refused:
        _respond(pool, claim)
    _refused(refused)
