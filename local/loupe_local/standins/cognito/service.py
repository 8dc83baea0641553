"""Cognito user pools: what moto does not check of a sign-in: the app client's allowed flows, the SRP password proof,
and the answers that would tell who has an account.

- Allowed flows: an app client lists the flows it accepts (``ExplicitAuthFlows``: ``ALLOW_USER_SRP_AUTH``, ...);
  Cognito refuses InitiateAuth / AdminInitiateAuth with any other flow, with ``InvalidParameterException`` ("...
  flow not enabled for this client"; Cognito Developer Guide, "Authentication flows", and ExplicitAuthFlows in the
  API Reference of CreateUserPoolClient). moto 5.2.5 accepts every flow for every client.
- SRP (``USER_SRP_AUTH``): moto answers InitiateAuth with a random SRP_B and SALT and signs in whoever answers
  RespondToAuthChallenge ``PASSWORD_VERIFIER``, whatever PASSWORD_CLAIM_SIGNATURE says. This stand-in answers both
  itself (:mod:`loupe_local.standins.cognito.srp`: a real B from a verifier of the user's password, a secret block
  that answers once) and lets moto answer only a claim that proves the password: moto then issues the tokens, or
  the next challenge (NEW_PASSWORD_REQUIRED for an invited user, MFA). A wrong password, a tampered signature, a
  stale TIMESTAMP, an unknown or used secret block get ``NotAuthorizedException`` "Incorrect username or password."
  as from Cognito. Docs: Cognito Developer Guide, "Authentication flows" (SRP: https://docs.aws.amazon.com/cognito/
  latest/developerguide/amazon-cognito-user-pools-authentication-flow-methods.html), API Reference InitiateAuth
  (https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_InitiateAuth.html) and
  RespondToAuthChallenge (.../API_RespondToAuthChallenge.html).
- ``PreventUserExistenceErrors: ENABLED`` (Developer Guide, "Managing user existence error responses",
  https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-user-pool-managing-errors.html): a user name
  that does not exist gets the answer a wrong password gets, not moto's ``UserNotFoundException``. For SRP that is
  a simulated challenge (a salt and verifier derived from the name, the same for the same name, so asking twice
  does not tell) whose every answer is refused with the same NotAuthorizedException; for USER_PASSWORD_AUTH the
  NotAuthorizedException at once.

- Software-token MFA (TOTP): moto gives every user one built-in secret and, unless an environment variable says
  otherwise, accepts any code. Here AssociateSoftwareToken hands each user a secret of their own, VerifySoftwareToken
  and the SOFTWARE_TOKEN_MFA answer are checked against it (RFC 6238, one step of drift either way:
  :mod:`loupe_local.totp`), and MFA_SETUP completes a sign-in only for a user who verified a token. A wrong code gets
  Cognito's errors: ``EnableSoftwareTokenMFAException`` when verifying a new token, ``CodeMismatchException`` at
  sign-in (API Reference, VerifySoftwareToken and RespondToAuthChallenge; Developer Guide, "TOTP software token
  MFA"). The secrets live as long as the local AWS does, as moto's users do.

moto's password and sessions are read from its in-process backend (the password never leaves the local AWS; moto's
own SRP session is never shown to a client, which could otherwise answer NEW_PASSWORD_REQUIRED with it unproven).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from loupe_local import totp
from loupe_local.standins.base import AwsRequest, Response, StandIn, error
from loupe_local.standins.cognito.srp import SrpRefused, SrpServer, parse_a, verifier

log = logging.getLogger("loupe_local.cognito")

_PREFIX = "AWSCognitoIdentityProviderService."
# AuthFlow -> the ExplicitAuthFlows entry that allows it
ALLOWING = {
    "USER_SRP_AUTH": "ALLOW_USER_SRP_AUTH",
    "USER_PASSWORD_AUTH": "ALLOW_USER_PASSWORD_AUTH",
    "REFRESH_TOKEN_AUTH": "ALLOW_REFRESH_TOKEN_AUTH",
    "REFRESH_TOKEN": "ALLOW_REFRESH_TOKEN_AUTH",
    "CUSTOM_AUTH": "ALLOW_CUSTOM_AUTH",
    "ADMIN_USER_PASSWORD_AUTH": "ALLOW_ADMIN_USER_PASSWORD_AUTH",
    "ADMIN_NO_SRP_AUTH": "ALLOW_ADMIN_USER_PASSWORD_AUTH",
}
# what a client that names no ExplicitAuthFlows allows (CreateUserPoolClient, ExplicitAuthFlows)
DEFAULT_FLOWS = ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_CUSTOM_AUTH"]
_OPERATIONS = (
    "InitiateAuth",
    "AdminInitiateAuth",
    "RespondToAuthChallenge",
    "AdminRespondToAuthChallenge",
    "AssociateSoftwareToken",
    "VerifySoftwareToken",
)
# Cognito's one answer to a sign-in it refuses, whatever was wrong (password, user name, proof)
INCORRECT = "Incorrect username or password."


def _moto_client(client_id: str) -> tuple[Any, Any, Any] | None:
    """moto's backend, user pool and app client that ``client_id`` belongs to (as moto finds it), or None."""
    from moto.cognitoidp.models import cognitoidp_backends

    for regions in cognitoidp_backends.values():
        for region, backend in regions.items():
            if region == "global":
                continue
            for pool in backend.user_pools.values():
                if client_id in pool.clients:
                    return backend, pool, pool.clients[client_id]
    return None


def _moto_call(call: Callable[[], dict[str, Any]]) -> Response:
    """moto's answer to ``call`` as the JSON it would have sent (its errors as AWS errors)."""
    from moto.core.exceptions import JsonRESTError

    try:
        return Response(body=call())
    except JsonRESTError as exc:
        return error(exc.error_type, exc.message, exc.code)


def _new_password_parameters(pool: Any, username: str, user_id_for_srp: str) -> dict[str, str]:
    """What Cognito's NEW_PASSWORD_REQUIRED challenge carries besides USERNAME and moto leaves out: the user's
    attributes and the required ones the user lacks, each a JSON string (RespondToAuthChallenge,
    NEW_PASSWORD_REQUIRED: ``userAttributes``, ``requiredAttributes``), which Cognito's browser library parses."""
    user = pool._get_user(username)
    attributes = {a["Name"]: a["Value"] for a in (user.attributes if user else []) if a["Name"] != "sub"}
    required = [
        f"userAttributes.{name}"
        for name, attribute in getattr(pool, "schema_attributes", {}).items()
        if getattr(attribute, "required", False) and name not in attributes and name != "sub"
    ]
    return {
        "USER_ID_FOR_SRP": user_id_for_srp,
        "userAttributes": json.dumps(attributes),
        "requiredAttributes": json.dumps(required),
    }


def _moto_user(access_token: str, session: str) -> tuple[str, str] | None:
    """(user pool id, user name) of a moto access token or sign-in session, or None when moto knows neither."""
    from moto.cognitoidp.models import cognitoidp_backends

    for regions in cognitoidp_backends.values():
        for region, backend in regions.items():
            if region == "global":
                continue
            if session and session in backend.sessions:
                username, pool = backend.sessions[session]
                return pool.id, username
            for pool in backend.user_pools.values():
                if access_token and access_token in pool.access_tokens:
                    return pool.id, pool.access_tokens[access_token][1]
    return None


def _hides_users(client: Any) -> bool:
    return client.extended_config.get("PreventUserExistenceErrors") == "ENABLED"


class CognitoFlows(StandIn):
    name = "cognito-auth-flows"

    def __init__(self) -> None:
        self._answers: dict[int, Callable[[], Response]] = {}
        self._lock = threading.Lock()
        self.refused = 0
        self.srp = SrpServer()
        self.srp_signed_in = 0
        self.srp_refused = 0
        # software tokens: (pool id, user name) -> the secret handed out, then the one verified
        self._pending_tokens: dict[tuple[str, str], str] = {}
        self._tokens: dict[tuple[str, str], str] = {}
        self.codes_refused = 0

    def _client_flows(self, client_id: str, pool_id: str | None) -> list[str] | None:
        idp = self.runtime.client("cognito-idp")
        pools = [pool_id] if pool_id else [p["Id"] for p in idp.list_user_pools(MaxResults=60)["UserPools"]]
        for pool in pools:
            try:
                client = idp.describe_user_pool_client(UserPoolId=pool, ClientId=client_id)["UserPoolClient"]
            except ClientError:  # not this pool's client; moto answers an unknown client itself
                continue
            return list(client.get("ExplicitAuthFlows") or DEFAULT_FLOWS)
        return None

    def _refuse_flow(self, flow: str, flows: list[str]) -> Response:
        with self._lock:
            self.refused += 1
        log.info("refused %s: the app client allows only %s", flow, flows)
        return error("InvalidParameterException", f"{flow} flow not enabled for this client", 400)

    def _claim(self, request: AwsRequest, answer: Callable[[], Response]) -> bool:
        with self._lock:
            self._answers[id(request)] = answer
        return True

    def handles(self, request: AwsRequest) -> bool:
        target = request.headers.get("x-amz-target", "")
        operation = target.removeprefix(_PREFIX) if target.startswith(_PREFIX) else ""
        if operation not in _OPERATIONS:
            return False
        try:
            body: dict[str, Any] = json.loads(request.body or b"{}")
        except ValueError:
            return False  # moto answers a malformed body with its own error
        if not isinstance(body, dict):
            return False
        client_id = str(body.get("ClientId") or "")
        if operation in ("AssociateSoftwareToken", "VerifySoftwareToken"):
            return self._software_token(request, operation, body)
        if operation.endswith("RespondToAuthChallenge"):
            # a password claim is never moto's to judge: it signs in any signature
            if body.get("ChallengeName") == "PASSWORD_VERIFIER":
                return self._claim(request, lambda: self._srp_respond(body))
            if body.get("ChallengeName") in ("SOFTWARE_TOKEN_MFA", "MFA_SETUP"):
                return self._mfa_answer(request, body)
            return False
        flow = str(body.get("AuthFlow") or "")
        if flow == "USER_SRP_AUTH" and operation == "InitiateAuth":
            # claimed before any lookup that could fail: moto must never answer an SRP sign-in
            return self._claim(request, lambda: self._srp_initiate(body))
        flows = self._client_flows(client_id, body.get("UserPoolId"))
        if flows is None or flow not in ALLOWING:
            return False
        if ALLOWING[flow] not in flows:
            return self._claim(request, lambda: self._refuse_flow(flow, flows))
        if flow == "USER_PASSWORD_AUTH" and self._unknown_hidden_user(client_id, body.get("AuthParameters")):
            return self._claim(request, lambda: self._refuse("no such user"))
        return False

    def handle(self, request: AwsRequest) -> Response:
        with self._lock:
            answer = self._answers.pop(id(request))
        return answer()

    # ------------------------------------------------------------------ sign-in checks
    def _unknown_hidden_user(self, client_id: str, parameters: Any) -> bool:
        """A user name the pool does not have, asked through a client that hides who exists."""
        found = _moto_client(client_id)
        if found is None or not isinstance(parameters, dict):
            return False
        _, pool, client = found
        username = str(parameters.get("USERNAME") or "")
        return bool(username) and _hides_users(client) and pool._get_user(username) is None

    def _refuse(self, reason: str) -> Response:
        with self._lock:
            self.srp_refused += 1
        log.info("sign-in refused: %s", reason)
        return error("NotAuthorizedException", INCORRECT, 400)

    def _srp_initiate(self, body: dict[str, Any]) -> Response:
        client_id = str(body.get("ClientId") or "")
        given = body.get("AuthParameters")
        parameters: dict[str, Any] = given if isinstance(given, dict) else {}
        found = _moto_client(client_id)
        if found is None:
            return error("ResourceNotFoundException", f"User pool client {client_id} does not exist.", 400)
        backend, pool, client = found
        flows = list(client.extended_config.get("ExplicitAuthFlows") or DEFAULT_FLOWS)
        if ALLOWING["USER_SRP_AUTH"] not in flows:
            return self._refuse_flow("USER_SRP_AUTH", flows)
        username, srp_a = str(parameters.get("USERNAME") or ""), str(parameters.get("SRP_A") or "")
        for name, value in (("USERNAME", username), ("SRP_A", srp_a)):
            if not value:
                return error("InvalidParameterException", f"Missing required parameter {name}", 400)
        try:
            parse_a(srp_a)
        except ValueError as exc:
            return error("InvalidParameterException", str(exc), 400)
        validity_s = float(client.extended_config.get("AuthSessionValidity") or 3) * 60
        user = pool._get_user(username)
        if user is None and _hides_users(client):
            # a simulated challenge, as for a user who exists (down to the form of the internal name: a UUID where
            # users sign in by an attribute); no answer to it signs in
            internal = (
                self.srp.fake_user_id(pool.id, username) if pool.extended_config.get("UsernameAttributes") else username
            )
            parameters_out = self.srp.challenge(
                pool_id=pool.id,
                client_id=client_id,
                username=username,
                user_id_for_srp=internal,
                srp_a_hex=srp_a,
                salt=self.srp.fake_salt(pool.id, username),
                v=self.srp.fake_verifier(pool.id, username),
                validity_s=validity_s,
                genuine=False,
            )
            return self._challenge_answer(internal, parameters_out)
        # moto's own checks (secret hash, user disabled or unconfirmed, unknown user on a LEGACY client) and the
        # session it answers the proven claim with
        answered = _moto_call(lambda: backend.initiate_auth(client_id, "USER_SRP_AUTH", parameters))
        if answered.status != 200 or user is None:
            return answered
        # Cognito's USER_ID_FOR_SRP is the user's user name (moto's: the name the user was created with)
        user_id = str(user.username)
        password = user.password
        salt = self.srp.salt(pool.id, user_id, password or "")
        parameters_out = self.srp.challenge(
            pool_id=pool.id,
            client_id=client_id,
            username=username,
            user_id_for_srp=user_id,
            srp_a_hex=srp_a,
            salt=salt,
            v=verifier(pool.id, user_id, password or "", salt),
            validity_s=validity_s,
            genuine=password is not None,
            extra={"session": str(answered.body["Session"])},
        )
        return self._challenge_answer(user_id, parameters_out)

    def _challenge_answer(self, username: str, parameters: dict[str, str]) -> Response:
        return Response(
            body={
                "ChallengeName": "PASSWORD_VERIFIER",
                # an opaque session of its own: moto's would let its NEW_PASSWORD_REQUIRED answer skip the proof
                "Session": base64.standard_b64encode(secrets.token_bytes(48)).decode(),
                "ChallengeParameters": {"USERNAME": username, **parameters},
            }
        )

    def _srp_respond(self, body: dict[str, Any]) -> Response:
        client_id = str(body.get("ClientId") or "")
        given = body.get("ChallengeResponses")
        responses: dict[str, Any] = given if isinstance(given, dict) else {}
        try:
            proven = self.srp.verify(client_id, {str(k): str(v) for k, v in responses.items()})
        except SrpRefused as exc:
            return self._refuse(str(exc))
        found = _moto_client(client_id)
        if found is None:
            return error("ResourceNotFoundException", f"User pool client {client_id} does not exist.", 400)
        backend = found[0]
        session = proven.extra["session"]
        # moto keys its PASSWORD_VERIFIER session by the secret block it issued; it is given the name the user signed
        # in with (its ID token's email claim is that name in a pool whose users sign in by e-mail)
        forwarded = {**responses, "USERNAME": proven.username, "PASSWORD_CLAIM_SECRET_BLOCK": session}
        answered = _moto_call(
            lambda: backend.respond_to_auth_challenge(session, client_id, "PASSWORD_VERIFIER", forwarded)
        )
        if answered.status == 200:
            with self._lock:
                self.srp_signed_in += 1
            if answered.body.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
                answered.body["ChallengeParameters"] = {
                    **answered.body.get("ChallengeParameters", {}),
                    **_new_password_parameters(found[1], proven.username, proven.user_id_for_srp),
                }
        return answered

    # ------------------------------------------------------------------ software-token MFA
    def _software_token(self, request: AwsRequest, operation: str, body: dict[str, Any]) -> bool:
        """AssociateSoftwareToken: a secret of the user's own. VerifySoftwareToken: the code checked against it
        (moto then marks the token verified and answers). A token or session moto does not know: moto's error."""
        session = str(body.get("Session") or "")
        user = _moto_user(str(body.get("AccessToken") or ""), session)
        if user is None:
            return False
        if operation == "AssociateSoftwareToken":
            secret = totp.new_secret()
            with self._lock:
                self._pending_tokens[user] = secret
            answer = {"SecretCode": secret, **({"Session": session} if session else {})}
            return self._claim(request, lambda: Response(body=answer))
        with self._lock:
            pending = self._pending_tokens.get(user)
        if pending is None or not totp.matches(pending, str(body.get("UserCode") or "")):
            return self._claim(
                request,
                lambda: self._code_refused(
                    "EnableSoftwareTokenMFAException", "Code mismatch and fail enable Software Token MFA"
                ),
            )
        with self._lock:
            self._tokens[user] = self._pending_tokens.pop(user)
        return False

    def _mfa_answer(self, request: AwsRequest, body: dict[str, Any]) -> bool:
        """SOFTWARE_TOKEN_MFA: the code must be the user's verified token's. MFA_SETUP: the user must have verified
        a token in this sign-in (AssociateSoftwareToken and VerifySoftwareToken with the challenge's session)."""
        user = _moto_user("", str(body.get("Session") or ""))
        if user is None:
            return False  # moto answers an unknown session
        with self._lock:
            secret = self._tokens.get(user)
        if body.get("ChallengeName") == "MFA_SETUP":
            if secret is None:
                return self._claim(
                    request, lambda: self._code_refused("NotAuthorizedException", "Invalid session for the user.")
                )
            return False
        given = body.get("ChallengeResponses")
        code = str(given.get("SOFTWARE_TOKEN_MFA_CODE") or "") if isinstance(given, dict) else ""
        if secret is None or not totp.matches(secret, code):
            return self._claim(
                request, lambda: self._code_refused("CodeMismatchException", "Invalid code received for user")
            )
        return False

    def _code_refused(self, code: str, message: str) -> Response:
        with self._lock:
            self.codes_refused += 1
        return error(code, message, 400)

    def status(self) -> dict[str, Any]:
        return {
            "refused": self.refused,
            "srp_signed_in": self.srp_signed_in,
            "srp_refused": self.srp_refused,
            "codes_refused": self.codes_refused,
        }
