"""The console's sign-in page calls the user pool from the browser, unsigned, as it does in AWS: the local gate
answers exactly the operations AWS authorizes without IAM credentials (and their CORS preflight, as Cognito's
endpoint does), and still refuses every other call a page makes or any other unsigned call."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.raw_http import raw

from loupe_local.local_auth import PUBLIC_USER_POOL_TARGETS, sign_request

pytestmark = pytest.mark.integration

PAGE = "http://127.0.0.1:9"  # the console's origin (another loopback port than the local AWS)
TARGET = "AWSCognitoIdentityProviderService"
JSON = {"Content-Type": "application/x-amz-json-1.1"}


def _send(rt: Any, method: str, headers: dict[str, str], body: bytes = b"", path: str = "/") -> Any:
    return raw(rt, method, path, headers, body)


def _cors(resp: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.getheaders() if k.lower().startswith("access-control-")}


def _browser(rt: Any, operation: str, body: dict[str, Any]) -> Any:
    """What amazon-cognito-identity-js sends from a page: a JSON POST with the target, an Origin, no signature."""
    headers = {
        **JSON,
        "X-Amz-Target": f"{TARGET}.{operation}",
        "X-Amz-User-Agent": "aws-amplify/5.0.4 js",
        "Origin": PAGE,
    }
    return _send(rt, "POST", headers, json.dumps(body).encode())


def test_the_public_operations_are_those_aws_authorizes_without_iam() -> None:
    names = {t.removeprefix(f"{TARGET}.") for t in PUBLIC_USER_POOL_TARGETS}
    assert {"InitiateAuth", "RespondToAuthChallenge", "GetUser", "GlobalSignOut", "RevokeToken"} <= names
    assert {"AssociateSoftwareToken", "VerifySoftwareToken", "ChangePassword"} <= names
    assert not [n for n in names if n.startswith("Admin")]
    assert not {"CreateUserPool", "ListUsers", "DescribeUserPoolClient", "AddCustomAttributes"} & names


def test_a_page_signs_in_unsigned_and_may_read_cognitos_answer(local_aws: Any) -> None:
    client = local_aws.physical("ConsoleUserPoolClient")
    params = {"USERNAME": "nobody@example.com", "PASSWORD": "Wrong-1"}
    answer = _browser(
        local_aws, "InitiateAuth", {"ClientId": client, "AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": params}
    )
    # Cognito itself judged it (the flow this client does not allow, or an unknown user), not the gate; the page may
    # read that answer
    assert answer.status == 400, answer.data
    cognito_errors = ("InvalidParameterException", "UserNotFoundException", "NotAuthorizedException")
    assert json.loads(answer.data)["__type"] in cognito_errors, answer.data
    assert _cors(answer) == {"access-control-allow-origin": "*"}
    # a token-authorized operation with a made-up access token: Cognito refuses the token, again readable
    user = _browser(local_aws, "GetUser", {"AccessToken": "not-a-token"})
    assert user.status == 400 and b"MissingAuthenticationToken" not in user.data, user.data
    assert _cors(user) == {"access-control-allow-origin": "*"}


def test_the_preflight_of_a_sign_in_call_is_granted_as_cognito_grants_it(local_aws: Any) -> None:
    asked = {"Origin": PAGE, "Access-Control-Request-Method": "POST"}
    ok = _send(
        local_aws, "OPTIONS", {**asked, "Access-Control-Request-Headers": "content-type,x-amz-target,x-amz-user-agent"}
    )
    assert ok.status == 200
    granted = _cors(ok)
    assert granted["access-control-allow-origin"] == "*"
    assert granted["access-control-allow-methods"] == "POST"
    assert set(granted["access-control-allow-headers"].split(", ")) == {
        "content-type",
        "x-amz-target",
        "x-amz-user-agent",
    }
    # a signature (Authorization, X-Amz-Date), another method or another path: nothing is granted
    for method, headers, path in (
        ("POST", "content-type,authorization,x-amz-date", "/"),
        ("PUT", "content-type", "/"),
        ("POST", "content-type", f"/{local_aws.physical('RawBucket')}/x"),
    ):
        refused = _send(
            local_aws,
            "OPTIONS",
            {**asked, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
            path=path,
        )
        assert refused.status == 403 and not _cors(refused), (method, headers, path)


def test_a_page_cannot_call_an_admin_operation_or_another_service(local_aws: Any) -> None:
    pool = local_aws.physical("ConsoleUserPool")
    email = f"page-{uuid.uuid4().hex[:8]}@example.com"
    made = _browser(local_aws, "AdminCreateUser", {"UserPoolId": pool, "Username": email})
    assert made.status == 403 and b"requests from web pages" in made.data and not _cors(made)
    # even signed with the run's key, a page's administrator call is refused
    body = json.dumps({"UserPoolId": pool, "Username": email}).encode()
    headers = {**JSON, "X-Amz-Target": f"{TARGET}.AdminCreateUser"}
    signed = sign_request(
        local_aws.credentials, "POST", local_aws.endpoint + "/", "cognito-idp", local_aws.region, body, headers
    )
    assert _send(local_aws, "POST", {**signed, "Origin": PAGE}, body).status == 403
    # unsigned without a page: refused as before
    unsigned = _send(local_aws, "POST", headers, body)
    assert unsigned.status == 403 and b"MissingAuthenticationToken" in unsigned.data
    with pytest.raises(ClientError) as info:
        local_aws.client("cognito-idp").admin_get_user(UserPoolId=pool, Username=email)
    assert info.value.response["Error"]["Code"] == "UserNotFoundException"
    # another service's JSON operation from a page: refused, nothing granted
    sqs = _send(local_aws, "POST", {**JSON, "X-Amz-Target": "AmazonSQS.ListQueues", "Origin": PAGE}, b"{}")
    assert sqs.status == 403 and not _cors(sqs)
