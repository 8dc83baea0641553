"""The HTTP API's JWT authorizer, locally: the checks API Gateway documents, against the local Cognito's keys.

API Gateway Developer Guide, "Control access to HTTP APIs with JWT authorizers" (http-api-jwt-authorizer.html):
the token comes from the identity source (``Authorization``, a ``Bearer`` prefix allowed); its ``kid`` must name
a key of the issuer's JWKS and the RS256 signature verify with it; ``iss`` must equal the issuer; ``aud`` (or,
when there is no ``aud``, ``client_id``) must be one of the audiences; ``exp`` must be in the future, ``nbf`` and
``iat`` in the past; when the route names scopes, ``scope``/``scp`` must hold one of them. Any failure: 401.
The authorizer does not look at groups: the handler does.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet


class Unauthorized(Exception):
    """The request gets 401 {"message": "Unauthorized"}; the reason is logged, never sent."""


def cognito_jwks_url(issuer: str, endpoint: str) -> str:
    """Where the local AWS serves the keys of a Cognito issuer (``https://cognito-idp.<region>.amazonaws.com/<pool>``)."""
    prefix = "https://cognito-idp."
    if not issuer.startswith(prefix) or ".amazonaws.com/" not in issuer:
        raise ValueError(f"issuer {issuer} is not a Cognito user pool; the local HTTP API reaches no other")
    pool = issuer.rsplit("/", 1)[-1]
    return f"{endpoint}/{pool}/.well-known/jwks.json"


def fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a loopback URL of the local AWS
        return json.loads(response.read())


class JwtAuthorizer:
    def __init__(
        self,
        issuer: str,
        audiences: list[str],
        jwks: Callable[[], dict[str, Any]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audiences = list(audiences)
        self._load_jwks = jwks
        self._keys: KeySet | None = None
        self._lock = threading.Lock()
        self.clock = clock

    def _key_set(self, kid: str) -> KeySet:
        with self._lock:
            if self._keys is None or not any(k.kid == kid for k in self._keys.keys):
                self._keys = KeySet.import_key_set(self._load_jwks())  # type: ignore[arg-type]
            return self._keys

    def authorize(self, authorization: str | None, scopes: list[str] | None = None) -> dict[str, Any]:
        """The token's claims, or Unauthorized."""
        if not authorization:
            raise Unauthorized("no Authorization header")
        token = authorization.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError) as exc:
            raise Unauthorized(f"not a JWT: {exc}") from exc
        if header.get("alg") != "RS256":
            raise Unauthorized(f"alg {header.get('alg')!r}: only RS256 is accepted")
        kid = str(header.get("kid") or "")
        keys = self._key_set(kid)
        key = next((k for k in keys.keys if k.kid == kid), None)
        if key is None:
            raise Unauthorized(f"kid {kid!r} is not a key of {self.issuer}")
        try:
            verified = jws.deserialize_compact(token, key, algorithms=["RS256"])
        except (JoseError, ValueError) as exc:
            raise Unauthorized(f"bad signature: {exc}") from exc
        try:
            claims = json.loads(verified.payload)
        except ValueError as exc:
            raise Unauthorized("the payload is not JSON") from exc
        self._check(claims, scopes or [])
        return claims

    def _check(self, claims: dict[str, Any], scopes: list[str]) -> None:
        now = self.clock()
        if claims.get("iss") != self.issuer:
            raise Unauthorized(f"iss {claims.get('iss')!r} is not {self.issuer}")
        audience = claims["aud"] if "aud" in claims else claims.get("client_id")
        given = audience if isinstance(audience, list) else [audience]
        if not any(a in self.audiences for a in given):
            raise Unauthorized(f"aud/client_id {audience!r} is not one of the audiences")
        for name, ok in (
            ("exp", lambda v: v > now),
            ("nbf", lambda v: v <= now),
            ("iat", lambda v: v <= now),
        ):
            if name not in claims:
                if name == "exp":
                    raise Unauthorized("no exp claim")
                continue
            try:
                value = float(claims[name])
            except (TypeError, ValueError) as exc:
                raise Unauthorized(f"{name} is not a number") from exc
            if not ok(value):
                raise Unauthorized(f"{name} {claims[name]} fails at {int(now)}")
        if scopes:
            held = str(claims.get("scope") or claims.get("scp") or "").split()
            if not set(held) & set(scopes):
                raise Unauthorized(f"none of the scopes {scopes}")
