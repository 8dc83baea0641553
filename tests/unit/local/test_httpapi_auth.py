"""The local JWT authorizer makes the checks API Gateway documents for HTTP API JWT authorizers, and refuses
everything else (401)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from loupe_local.standins.httpapi.auth import JwtAuthorizer, Unauthorized, cognito_jwks_url

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example1"
CLIENT = "client-123"


def _key(kid: str = "k1") -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid})


KEY = _key()


def _token(key: Any = KEY, header: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": CLIENT, "token_use": "id", "iat": now, "exp": now + 3600, "sub": "u1", **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(header or {"alg": "RS256", "kid": key.kid}, body, key)


class Jwks:
    def __init__(self, *keys: RSAKey) -> None:
        self.keys = list(keys)
        self.fetched = 0

    def __call__(self) -> dict[str, Any]:
        self.fetched += 1
        return KeySet(self.keys).as_dict(private=False)


def _authorizer(jwks: Jwks | None = None) -> JwtAuthorizer:
    return JwtAuthorizer(ISSUER, [CLIENT], jwks or Jwks(KEY))


def test_a_valid_id_or_access_token_passes_with_or_without_bearer() -> None:
    auth = _authorizer()
    assert auth.authorize(f"Bearer {_token()}")["sub"] == "u1"
    access = _token(aud=None, client_id=CLIENT, token_use="access")
    assert auth.authorize(access)["client_id"] == CLIENT


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"},
        {"aud": "another-client"},
        {"aud": None, "client_id": "another-client"},
        {"aud": None},
        {"exp": lambda now: now - 1},  # times relative to when the test runs, not to collection
        {"exp": None},
        {"nbf": lambda now: now + 600},
        {"iat": lambda now: now + 600},
    ],
)
def test_claims_out_of_bounds_are_refused(claims: dict[str, Any]) -> None:
    now = int(time.time())
    claims = {name: value(now) if callable(value) else value for name, value in claims.items()}
    with pytest.raises(Unauthorized):
        _authorizer().authorize(_token(**claims))


def test_missing_or_malformed_tokens_are_refused() -> None:
    for value in (None, "", "Bearer ", "not-a-jwt", "a.b.c"):
        with pytest.raises(Unauthorized):
            _authorizer().authorize(value)


def test_a_signature_by_another_key_is_refused_even_under_a_known_kid() -> None:
    impostor = _key("k1")
    with pytest.raises(Unauthorized):
        _authorizer().authorize(_token(impostor))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_no_algorithm_but_rs256_is_accepted() -> None:
    _, payload, _ = _token().split(".")
    # HMAC keyed with the public key's PEM (the classic algorithm confusion), made by hand: joserfc refuses to
    hmac_header = _b64(b'{"alg":"HS256","kid":"k1"}')
    signing_input = f"{hmac_header}.{payload}".encode()
    mac = hmac.new(KEY.as_pem(private=False), signing_input, hashlib.sha256).digest()
    with pytest.raises(Unauthorized):
        _authorizer().authorize(f"{hmac_header}.{payload}.{_b64(mac)}")
    unsigned = _b64(b'{"alg":"none","kid":"k1"}')
    with pytest.raises(Unauthorized):
        _authorizer().authorize(f"{unsigned}.{payload}.")


def test_an_unknown_kid_refetches_the_keys_once_then_refuses() -> None:
    jwks = Jwks(KEY)
    auth = _authorizer(jwks)
    auth.authorize(_token())
    rotated = _key("k2")
    with pytest.raises(Unauthorized):
        auth.authorize(_token(rotated))
    assert jwks.fetched == 2
    jwks.keys.append(rotated)  # the pool rotated its keys: the next token with the new kid is accepted
    assert auth.authorize(_token(rotated))["sub"] == "u1"


def test_route_scopes_need_one_held_scope() -> None:
    token = _token(aud=None, client_id=CLIENT, token_use="access", scope="loupe/read openid")
    assert _authorizer().authorize(token, ["loupe/read"])
    with pytest.raises(Unauthorized):
        _authorizer().authorize(token, ["loupe/write"])


def test_only_a_cognito_issuer_maps_to_the_local_keys() -> None:
    assert (
        cognito_jwks_url(ISSUER, "http://127.0.0.1:5") == "http://127.0.0.1:5/us-east-1_Example1/.well-known/jwks.json"
    )
    with pytest.raises(ValueError):
        cognito_jwks_url("https://login.example.com/", "http://127.0.0.1:5")
