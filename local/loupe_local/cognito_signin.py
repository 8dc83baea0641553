"""Sign in to a Cognito user pool the way the console app does: ``USER_SRP_AUTH`` (the password never leaves the
caller), with pycognito's SRP client. Used by the local stack's bot labelers and the tests; the stack's app client
allows SRP only unless ``ConsolePasswordSignIn=true``.

An invited user's first sign-in answers ``NEW_PASSWORD_REQUIRED`` with ``new_password``
(Cognito Developer Guide, "Authentication flows"; RespondToAuthChallenge in the Cognito API Reference).
"""

from __future__ import annotations

from typing import Any

from pycognito.aws_srp import AWSSRP


class SignInError(RuntimeError):
    """Cognito answered the sign-in with a challenge this helper does not answer (MFA, or a new password when none
    was given)."""


def sign_in(
    idp: Any, pool_id: str, client_id: str, username: str, password: str, new_password: str | None = None
) -> dict[str, Any]:
    """The ``AuthenticationResult`` (IdToken, AccessToken, RefreshToken, ...) of an SRP sign-in. A refused password
    raises botocore's ``ClientError`` (``NotAuthorizedException``) as Cognito answers it."""
    srp = AWSSRP(username=username, password=password, pool_id=pool_id, client_id=client_id, client=idp)
    parameters = srp.get_auth_params()
    challenge = idp.initiate_auth(ClientId=client_id, AuthFlow="USER_SRP_AUTH", AuthParameters=parameters)
    if challenge.get("ChallengeName") != "PASSWORD_VERIFIER":
        raise SignInError(f"{username}: expected the PASSWORD_VERIFIER challenge, got {challenge.get('ChallengeName')}")
    claim = srp.process_challenge(challenge["ChallengeParameters"], parameters)
    extra = {"Session": challenge["Session"]} if challenge.get("Session") else {}
    answered = idp.respond_to_auth_challenge(
        ClientId=client_id, ChallengeName="PASSWORD_VERIFIER", ChallengeResponses=claim, **extra
    )
    if answered.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
        if new_password is None:
            raise SignInError(f"{username}: Cognito asks for a new password (first sign-in) and none was given")
        answered = idp.respond_to_auth_challenge(
            ClientId=client_id,
            ChallengeName="NEW_PASSWORD_REQUIRED",
            Session=answered["Session"],
            ChallengeResponses={
                "USERNAME": answered.get("ChallengeParameters", {}).get("USERNAME") or claim["USERNAME"],
                "NEW_PASSWORD": new_password,
            },
        )
    if "AuthenticationResult" not in answered:
        raise SignInError(f"{username}: Cognito answered {answered.get('ChallengeName')}, which this does not answer")
    result: dict[str, Any] = answered["AuthenticationResult"]
    return result
