"""moto patch 8: an app client without ReadAttributes reads the standard attributes, as CreateUserPoolClient
documents, so the ID token's ``email`` is the user's address whatever name the sign-in used (an SRP client answers
with the internal name, USER_ID_FOR_SRP: a UUID in a pool whose users sign in by e-mail)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import boto3
from moto import mock_aws

from loupe_local.host import moto_patches


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _sign_in_by_internal_name(read_attributes: list[str] | None) -> tuple[str, dict[str, Any]]:
    idp = boto3.client("cognito-idp", region_name="eu-west-1")
    pool = idp.create_user_pool(PoolName="claims", UsernameAttributes=["email"])["UserPool"]["Id"]
    extra = {"ReadAttributes": read_attributes} if read_attributes else {}
    client = idp.create_user_pool_client(
        UserPoolId=pool, ClientName="c", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"], **extra
    )["UserPoolClient"]["ClientId"]
    email, password = f"claims-{uuid.uuid4().hex[:8]}@example.com", f"Aa1!{uuid.uuid4().hex}"
    made = idp.admin_create_user(
        UserPoolId=pool,
        Username=email,
        UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
        MessageAction="SUPPRESS",
    )["User"]
    idp.admin_set_user_password(UserPoolId=pool, Username=email, Password=password, Permanent=True)
    internal = made["Username"]
    assert internal != email  # the pool's own name for the user (its sub), as in Cognito
    tokens = idp.initiate_auth(
        ClientId=client, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": internal, "PASSWORD": password}
    )["AuthenticationResult"]
    return email, _claims(tokens["IdToken"])


def test_the_id_token_carries_the_users_address_when_the_client_names_no_read_attributes() -> None:
    moto_patches.apply()
    with mock_aws():
        email, claims = _sign_in_by_internal_name(None)
        assert claims["email"] == email and claims["email_verified"] == "true", claims
        # a client that names its attributes reads those only (moto's own rule, kept)
        email, claims = _sign_in_by_internal_name(["name"])
        assert "email_verified" not in claims
