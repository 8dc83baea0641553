"""Sign in to a Cognito user pool the way the console app does: ``USER_SRP_AUTH`` (the password never leaves the
caller), with pycognito's SRP client. Used by the local stack's bot labelers and the tests; the stack's app client
allows SRP only unless ``ConsolePasswordSignIn=true``.

An invited user's first sign-in answers ``NEW_PASSWORD_REQUIRED`` with ``new_password``
(Cognito Developer Guide, "Authentication flows"; RespondToAuthChallenge in the Cognito API Reference).

With an :class:`Authenticator` it also answers the MFA challenges of a pool that requires or offers software-token
MFA, as an authenticator app would: ``MFA_SETUP`` (a pool with ``MfaConfiguration: ON`` and a user without a token:
AssociateSoftwareToken and VerifySoftwareToken with the challenge's session, then RespondToAuthChallenge with the
session VerifySoftwareToken returned) and ``SOFTWARE_TOKEN_MFA`` (the current RFC 6238 code of the secret it keeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pycognito.aws_srp import AWSSRP

from loupe_local import totp


class SignInError(RuntimeError):
    """Cognito answered the sign-in with a challenge this helper does not answer (MFA, or a new password when none
    was given)."""


@dataclass
class Authenticator:
    """What an authenticator app holds for one user: the secret of the software token it set up (none yet)."""

    secret: str | None = None
    device_name: str = "loupe-bot"


def sign_in(
    idp: Any,
    pool_id: str,
    client_id: str,
    username: str,
    password: str,
    new_password: str | None = None,
    authenticator: Authenticator | None = None,
) -> dict[str, Any]:
    """The ``AuthenticationResult`` (IdToken, AccessToken, RefreshToken, ...) of an SRP sign-in. A refused password
    raises botocore's ``ClientError`` (``NotAuthorizedException``) as Cognito answers it, a refused one-time code
    ``CodeMismatchException`` / ``EnableSoftwareTokenMFAException``."""
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
    if authenticator is not None:
        answered = _answer_mfa(idp, client_id, claim["USERNAME"], answered, authenticator)
    if "AuthenticationResult" not in answered:
        raise SignInError(f"{username}: Cognito answered {answered.get('ChallengeName')}, which this does not answer")
    result: dict[str, Any] = answered["AuthenticationResult"]
    return result


def _answer_mfa(
    idp: Any, client_id: str, signed_in_as: str, answered: dict[str, Any], authenticator: Authenticator
) -> dict[str, Any]:
    """Answers MFA_SETUP (a new software token, kept in ``authenticator``) or SOFTWARE_TOKEN_MFA (its code)."""
    challenge = answered.get("ChallengeName")
    username = answered.get("ChallengeParameters", {}).get("USERNAME") or signed_in_as
    if challenge == "MFA_SETUP":
        associated = idp.associate_software_token(Session=answered["Session"])
        secret = associated["SecretCode"]
        verified = idp.verify_software_token(
            Session=associated.get("Session") or answered["Session"],
            UserCode=totp.code(secret),
            FriendlyDeviceName=authenticator.device_name,
        )
        authenticator.secret = secret
        return dict(
            idp.respond_to_auth_challenge(
                ClientId=client_id,
                ChallengeName="MFA_SETUP",
                Session=verified["Session"],
                ChallengeResponses={"USERNAME": username},
            )
        )
    if challenge == "SOFTWARE_TOKEN_MFA" and authenticator.secret is not None:
        return dict(
            idp.respond_to_auth_challenge(
                ClientId=client_id,
                ChallengeName="SOFTWARE_TOKEN_MFA",
                Session=answered["Session"],
                ChallengeResponses={"USERNAME": username, "SOFTWARE_TOKEN_MFA_CODE": totp.code(authenticator.secret)},
            )
        )
    return answered
