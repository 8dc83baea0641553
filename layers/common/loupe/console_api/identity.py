"""The caller of a console route, read from the claims the HTTP API's JWT authorizer validated.

The JWT authorizer checks the token (signature against the pool's JWKS, ``iss``, ``aud``/``client_id``, ``exp``,
``nbf``, ``iat``, scopes) and passes its claims on; it does not know Loupe's groups. Which route a group may call
is checked here, from the ``cognito:groups`` claim (API Gateway Developer Guide, "Controlling access to HTTP APIs
with JWT authorizers": the authorizer validates the token and, if the route has them, its scopes; nothing more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUPS = ("labelers", "reviewers", "approvers")


class Forbidden(Exception):
    """The caller's token is valid but its groups do not allow the route (HTTP 403)."""


@dataclass(frozen=True)
class Caller:
    username: str
    email: str
    groups: tuple[str, ...]
    token_use: str

    @property
    def name(self) -> str:
        """How an approval names the person: the e-mail when the token carries one, else the username."""
        return self.email or self.username

    def require(self, group: str) -> None:
        if group not in self.groups:
            raise Forbidden(f"only the {group} group may do this; {self.name} is in {list(self.groups) or 'no group'}")

    def require_any(self) -> None:
        """A member of at least one of Loupe's groups (a user added to the pool by hand, in none, reads nothing)."""
        if not set(self.groups) & set(GROUPS):
            raise Forbidden(f"only members of {', '.join(GROUPS)} may read this; {self.name} is in no such group")

    def as_json(self) -> dict[str, Any]:
        return {"username": self.username, "name": self.name, "email": self.email, "groups": list(self.groups)}


def _groups(value: Any) -> tuple[str, ...]:
    """``cognito:groups`` as API Gateway hands it on: a JSON list in the token, flattened by the authorizer into
    ``"[a b]"`` (payload 2.0 claims are strings), or already a list."""
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    text = str(value or "").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return tuple(part for part in text.replace(",", " ").split() if part)


def caller_from_claims(claims: Mapping[str, Any]) -> Caller:
    """The caller of an ID or access token's claims (Cognito: ``cognito:username`` in ID tokens, ``username`` in
    access tokens; ``email`` only in ID tokens)."""
    username = str(claims.get("cognito:username") or claims.get("username") or claims.get("sub") or "")
    return Caller(
        username=username,
        email=str(claims.get("email") or ""),
        groups=_groups(claims.get("cognito:groups")),
        token_use=str(claims.get("token_use") or ""),
    )
