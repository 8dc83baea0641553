"""Who may talk to the local AWS: a per-run secret credential, loopback Host names, and no browser origins.

Threat: the local AWS listens on 127.0.0.1, but a web page the user visits can still reach it (the browser sends
the request; DNS rebinding even makes it same-origin), and another local user can too. So the gateway in front of
moto refuses, before any service sees the request:

* any request that carries an ``Origin`` header (browsers add it to cross-origin and to every non-GET fetch; no
  AWS SDK sends one): nothing of the local loop is meant to be called from a page — the console proxies what its
  pages show, and the Ground Truth worker stand-in reads S3 with boto3;
* a ``Host`` that is not a loopback name with the server's own port (``127.0.0.1:<port>``, ``localhost:<port>``,
  ``[::1]:<port>``): a rebound DNS name arrives with the attacker's host name;
* a request not signed with the run's credential. ``loupe local up`` makes a fresh access key and secret for each
  run, writes them to ``.loupe/local.json`` (owner-only: the folder 0700, the file 0600) and hands them to the
  CLI, the local devices and every client the runtime makes. The SigV4 signature is checked as AWS checks it
  (``Authorization`` header or presigned query string), with botocore's own signer recomputing it from the
  request as received — "Authenticating Requests (AWS Signature Version 4)",
  AmazonS3/latest/API/sig-v4-authenticating-requests.html, and IAM's "Create a signed AWS API request",
  IAM/latest/UserGuide/create-signed-request.html.

With ``LOUPE_LOCAL_IAM`` audit or enforce, the stack's principals (functions, state machines) sign with their own
role sessions, minted from moto's STS (``loupe_local.iam.principals``): the gatekeeper also accepts those keys, each
with its own session token (``X-Amz-Security-Token``) and until it expires (``ExpiredToken``), and hands the session
to the gateway's IAM check (``loupe_local.iam.audit``).

Exceptions to the signature: a user pool's public keys (``GET /<pool id>/.well-known/jwks.json`` and
``openid-configuration``), which Cognito serves to anyone, unsigned ("Verifying a JSON Web Token", Cognito
Developer Guide: the JWKS URI is public); the local HTTP API's JWT authorizer reads them there. And the user pool
sign-in operations, which AWS answers unsigned ("you can't use IAM credentials to authorize requests" to
InitiateAuth and RespondToAuthChallenge, Cognito API Reference; botocore sends them without a signature): a
person proves who they are with their password there, not with the run's key. And the IoT credentials provider's
``GET /role-aliases/<alias>/credentials``, where a device proves its certificate instead (the stand-in checks it,
``standins/credentials_provider.py``). The Host check still applies to all of them.

The user pool operations that AWS authorizes without IAM credentials are also the only ones a web page may call:
the console's sign-in page calls them from the browser, as it does against Cognito in AWS. They are the operations
whose API Reference page says "you can't use IAM credentials to authorize requests" (Cognito Developer Guide, "Using
the Amazon Cognito user pools API and user pool endpoints": the unauthenticated and token-authorized operations) —
exactly those AWS's own service model marks as sent without a signature (``smithy.api#noAuth``), which is where
:data:`PUBLIC_USER_POOL_TARGETS` is read from. Such a call may carry an ``Origin`` and its answer grants any origin
(``Access-Control-Allow-Origin: *``), and the gate answers the browser's preflight for them (:func:`preflight`), as
Cognito's endpoint does: it restricts no origin (amplify-js issue #2982, "currently this is not supported on
Cognito"; the API Reference documents no CORS setting for it). Every other request with an ``Origin`` is still
refused, and so is any other unsigned call.

A refusal is the error the service's protocol would give (S3's XML ``<Error>``, the query protocol's
``<ErrorResponse>``, JSON's ``__type``), status 403, so every SDK reports it as the AWS error it knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.auth import HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials as BotoCredentials

from loupe_local.host.mqtt_policy import USERNAME
from loupe_local.iam.principals import SessionRegistry

ALGORITHM = "AWS4-HMAC-SHA256"
# AWS refuses a header-signed request whose X-Amz-Date is more than 15 minutes away from its clock
MAX_SKEW_SECONDS = 15 * 60
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_COGNITO_TARGET_PREFIX = "AWSCognitoIdentityProviderService."


def _public_user_pool_operations() -> frozenset[str]:
    """The user pool operations AWS authorizes without IAM credentials (a password, a session, a code or the
    user's own access token is the credential): those botocore's model of the service sends unsigned."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("cognito-idp")
    names = set()
    for name in model.operation_names:
        operation = model.operation_model(name)
        if operation.auth_type == "none" or "smithy.api#noAuth" in (getattr(operation, "auth", None) or []):
            names.add(name)
    return frozenset(names)


# X-Amz-Target of each; InitiateAuth, RespondToAuthChallenge, GetUser, GlobalSignOut, RevokeToken, ... but never an
# Admin* operation or another service's
PUBLIC_USER_POOL_TARGETS = frozenset(_COGNITO_TARGET_PREFIX + name for name in _public_user_pool_operations())
# what the browser SDKs send with them (amazon-cognito-identity-js: Content-Type, X-Amz-Target, X-Amz-User-Agent)
_PREFLIGHT_HEADERS = frozenset({"content-type", "x-amz-target", "x-amz-user-agent", "cache-control"})
# a user pool's public keys: served unsigned, as Cognito serves them
_PUBLIC_KEYS = re.compile(r"^/[a-z]{2}(-[a-z]+)+-[0-9]_[0-9A-Za-z]+/\.well-known/(jwks\.json|openid-configuration)$")
# the IoT credentials provider's route (``GET /role-aliases/<alias>/credentials``): a device authenticates there with
# its certificate, not with SigV4 (IoT developer guide, "Authorizing direct calls to AWS services using AWS IoT Core
# credential provider"); the stand-in (standins/credentials_provider.py) checks the certificate's proof itself
_CREDENTIALS_PROVIDER = re.compile(r"^/role-aliases/[\w=,@-]{1,128}/credentials$")
CERTIFICATE_ROUTE = "loupe.certificate_route"  # environ key: the request passed the gate on its certificate route
_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class RunCredentials:
    """The local AWS's one accepted credential for this run (an access key pair, as IAM issues them)."""

    access_key_id: str
    secret_access_key: str

    @classmethod
    def generate(cls) -> RunCredentials:
        # 20 upper-case characters like an IAM key id; 40 random characters of secret (240 bits)
        key_id = "LOUPE" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(15))
        return cls(key_id, secrets.token_urlsafe(30))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunCredentials:
        creds = state.get("credentials") or {}
        if not creds.get("aws_access_key_id") or not creds.get("aws_secret_access_key"):
            raise KeyError("local.json has no credentials: restart the local AWS (`loupe local down` then `up`)")
        return cls(creds["aws_access_key_id"], creds["aws_secret_access_key"])

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RunCredentials | None:
        """The credential in ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (what the runtime hands its
        children), or None."""
        env = dict(os.environ) if env is None else env
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        return cls(key, secret) if key and secret else None

    def as_state(self) -> dict[str, str]:
        return {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}

    def derive(self, purpose: str) -> str:
        """A secret of its own for another local service (the MQTT broker), derived from this run's secret."""
        return hmac.new(self.secret_access_key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------------- signing
def sign_request(
    credentials: RunCredentials,
    method: str,
    url: str,
    service: str,
    region: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers (``Authorization``, ``X-Amz-Date``, ...) of ``method url`` signed with SigV4 by botocore,
    for callers of the local endpoint that are not boto3 (the devices' protocol, tests)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    SigV4Auth(_boto(credentials), service, region).add_auth(request)
    return dict(request.headers.items())


def _boto(credentials: RunCredentials) -> BotoCredentials:
    return BotoCredentials(credentials.access_key_id, credentials.secret_access_key)


# ---------------------------------------------------------------------------------------------- refusals
@dataclass
class Refusal:
    code: str
    message: str
    status: int = 403

    def encode(self, environ: dict[str, Any], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The refusal in the protocol of the refused request."""
        request_id = str(uuid.uuid4())
        protocol = _protocol(environ, body)
        if protocol == "json":
            data = json.dumps({"__type": self.code, "message": self.message, "Message": self.message}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": self.code}
        elif protocol == "cbor":
            data = _cbor_map({"__type": self.code, "message": self.message})
            headers = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}
        elif protocol == "query":
            data = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
                f"<Code>{_xml(self.code)}</Code><Message>{_xml(self.message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            headers = {"Content-Type": "text/xml"}
        else:  # S3 (REST-XML), and whatever cannot be told apart from it
            data = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{_xml(self.code)}</Code>'
                f"<Message>{_xml(self.message)}</Message><RequestId>{request_id}</RequestId></Error>"
            ).encode()
            headers = {"Content-Type": "application/xml"}
        headers |= {"Content-Length": str(len(data)), "x-amzn-RequestId": request_id}
        return self.status, headers, data


def access_denied(environ: dict[str, Any], body: bytes, message: str) -> Refusal:
    """The AccessDenied error of the request's protocol: ``AccessDenied`` (S3, and the query protocol of STS, IAM
    and SQS), SNS's ``AuthorizationError`` (SNS API Reference, Publish errors), ``AccessDeniedException`` (the JSON
    protocols: DynamoDB, Lambda, Step Functions, SageMaker, IoT, CloudWatch, EventBridge)."""
    protocol = _protocol(environ, body)
    service = signing_name(environ)
    if protocol == "s3":
        code = "AccessDenied"
    elif protocol == "query":
        code = "AuthorizationError" if service == "sns" else "AccessDenied"
    else:
        code = "AccessDeniedException"
    return Refusal(code, message)


def signing_name(environ: dict[str, Any]) -> str:
    """The service name in the request's credential scope (``s3`` for a SigV2-presigned S3 URL)."""
    return _scope(environ).get("service", "s3")


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cbor_text(text: str) -> bytes:
    raw = text.encode()
    n = len(raw)
    head = bytes([0x60 + n]) if n < 24 else bytes([0x78, n]) if n < 256 else bytes([0x79]) + n.to_bytes(2, "big")
    return head + raw


def _cbor_map(items: dict[str, str]) -> bytes:
    """A CBOR map of short text strings (RFC 8949 major types 3 and 5): the Smithy RPC v2 CBOR error body."""
    return bytes([0xA0 + len(items)]) + b"".join(_cbor_text(k) + _cbor_text(v) for k, v in items.items())


def _protocol(environ: dict[str, Any], body: bytes) -> str:
    service = _scope(environ).get("service", "")
    content_type = environ.get("CONTENT_TYPE", "")
    if service == "s3":
        return "s3"
    if environ.get("HTTP_SMITHY_PROTOCOL") == "rpc-v2-cbor":
        return "cbor"
    if environ.get("HTTP_X_AMZ_TARGET") or content_type.startswith("application/x-amz-json"):
        return "json"
    form = content_type.startswith("application/x-www-form-urlencoded") and b"Action=" in body
    if form or "Action" in parse_qs(environ.get("QUERY_STRING", "")):
        return "query"
    if service or content_type.startswith("application/json"):
        return "json"  # the REST-JSON services read x-amzn-ErrorType
    return "s3"


def _scope(environ: dict[str, Any]) -> dict[str, str]:
    """access key, date, region and service of the request's credential (header or query), when it has one."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    credential = ""
    if auth.startswith(ALGORITHM):
        credential = _auth_fields(auth).get("Credential", "")
    else:
        credential = (parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential") or [""])[0]
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return {}
    return {"access_key": parts[0], "date": parts[1], "region": parts[2], "service": parts[3]}


def _auth_fields(header: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in header[len(ALGORITHM) :].split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    return fields


# ---------------------------------------------------------------------------------------------- browsers
def is_public_user_pool_call(environ: dict[str, Any]) -> bool:
    """A POST of a user pool operation that AWS authorizes without IAM credentials."""
    return environ.get("REQUEST_METHOD") == "POST" and environ.get("HTTP_X_AMZ_TARGET") in PUBLIC_USER_POOL_TARGETS


def public_cors_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The CORS grant on the answer to a browser's call of a public user pool operation (any origin, as Cognito)."""
    if environ.get("HTTP_ORIGIN") is None or not is_public_user_pool_call(environ):
        return []
    return [("Access-Control-Allow-Origin", "*")]


def preflight(environ: dict[str, Any], port: int) -> tuple[int, list[tuple[str, str]]] | None:
    """The answer to a browser's CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``),
    or None when the request is not one. A preflight names no operation (``X-Amz-Target`` is only listed in
    ``Access-Control-Request-Headers``), so the grant covers a JSON POST with the headers the Cognito SDKs send and
    nothing else; the POST itself must then be a public user pool operation, or the gate refuses it."""
    if environ.get("REQUEST_METHOD") != "OPTIONS" or environ.get("HTTP_ORIGIN") is None:
        return None
    wanted = (environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD") or "").upper()
    if not wanted:
        return None
    host = environ.get("HTTP_HOST", "").lower()
    headers = {h.strip().lower() for h in (environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS") or "").split(",")}
    headers.discard("")
    loopback = host in {f"{name}:{port}" for name in LOOPBACK_HOSTS}
    # the user pool API is POSTed to the endpoint's root
    if not loopback or environ.get("PATH_INFO") != "/" or wanted != "POST" or not headers <= _PREFLIGHT_HEADERS:
        return 403, []  # no Access-Control-* header: the browser does not send the request
    return 200, [
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Methods", "POST"),
        ("Access-Control-Allow-Headers", ", ".join(sorted(headers))),
        ("Access-Control-Max-Age", "86400"),
        ("Content-Length", "0"),
    ]


# ---------------------------------------------------------------------------------------------- the check
class Gatekeeper:
    """Decides whether the local AWS answers a request (``check``: None to answer, else the :class:`Refusal`)."""

    def __init__(self, credentials: RunCredentials, port: int, sessions: SessionRegistry | None = None) -> None:
        self.credentials = credentials
        self.port = port
        self.hosts = {f"{name}:{port}" for name in LOOPBACK_HOSTS}
        # the role sessions of the principals acting under their own role (loupe_local.iam.principals), by key id
        self.sessions = sessions if sessions is not None else SessionRegistry()

    def check(self, environ: dict[str, Any], body: bytes) -> Refusal | None:
        origin = environ.get("HTTP_ORIGIN")
        public = is_public_user_pool_call(environ)
        if origin is not None and not public:
            return Refusal("AccessDenied", f"requests from web pages (Origin: {origin}) are refused")
        host = environ.get("HTTP_HOST", "")
        if host.lower() not in self.hosts:
            return Refusal("AccessDenied", f"Host {host!r} is not this local AWS (use 127.0.0.1:{self.port})")
        if environ.get("REQUEST_METHOD") == "GET" and _PUBLIC_KEYS.match(environ.get("PATH_INFO", "")):
            return None
        if (
            environ.get("REQUEST_METHOD") == "GET"
            and not environ.get("HTTP_AUTHORIZATION")
            and _CREDENTIALS_PROVIDER.match(environ.get("PATH_INFO", ""))
        ):
            # answered by the credentials provider stand-in or by nobody: never by moto, which would take an
            # unsigned GET for S3 (GetObject of bucket "role-aliases")
            environ[CERTIFICATE_ROUTE] = True
            return None
        if public:
            # AWS ignores IAM credentials on these operations; a signature, if any, proves nothing more here
            return None
        if environ.get("HTTP_AUTHORIZATION"):
            return self._check_header(environ, body)
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if "X-Amz-Signature" in query or "X-Amz-Credential" in query:
            return self._check_presigned(environ, query)
        if "Signature" in query and "AWSAccessKeyId" in query:
            return self._check_presigned_v2(environ, query)
        s3 = _protocol(environ, body) == "s3"
        return Refusal(
            "AccessDenied" if s3 else "MissingAuthenticationToken",
            "Request is missing Authentication Token: sign it with the credentials in .loupe/local.json "
            '(eval "$(loupe local env)")',
        )

    def _check_header(self, environ: dict[str, Any], body: bytes) -> Refusal | None:
        auth = environ["HTTP_AUTHORIZATION"]
        if not auth.startswith(ALGORITHM + " "):
            return Refusal("IncompleteSignature", f"only {ALGORITHM} (Signature Version 4) is accepted", 400)
        fields = _auth_fields(auth)
        scope = _scope(environ)
        amz_date = environ.get("HTTP_X_AMZ_DATE", "")
        if not scope or not fields.get("SignedHeaders") or not fields.get("Signature") or not amz_date:
            return Refusal("IncompleteSignature", "the Authorization header is missing parts of a SigV4 signature", 400)
        signer = self._signer(scope, environ.get("HTTP_X_AMZ_SECURITY_TOKEN"), environ)
        if isinstance(signer, Refusal):
            return signer
        try:
            signed_at = _parse_amz_date(amz_date)
        except ValueError:
            return Refusal("IncompleteSignature", f"X-Amz-Date {amz_date!r} is not YYYYMMDD'T'HHMMSS'Z'", 400)
        if abs(time.time() - signed_at) > MAX_SKEW_SECONDS:
            return Refusal(
                "RequestTimeTooSkewed" if scope["service"] == "s3" else "InvalidSignatureException",
                "Signature expired: the request time is more than 15 minutes from the server's time",
            )
        content_sha = environ.get("HTTP_X_AMZ_CONTENT_SHA256", "")
        if _is_hex_digest(content_sha) and not hmac.compare_digest(content_sha, hashlib.sha256(body).hexdigest()):
            return Refusal("XAmzContentSHA256Mismatch", "the body does not match x-amz-content-sha256", 400)
        expected = self._signature(environ, body, scope, fields["SignedHeaders"], amz_date, False, signer)
        if not hmac.compare_digest(expected, fields["Signature"]):
            return _mismatch()
        return None

    def _check_presigned(self, environ: dict[str, Any], query: dict[str, list[str]]) -> Refusal | None:
        def one(name: str) -> str:
            return (query.get(name) or [""])[0]

        scope = _scope(environ)
        if one("X-Amz-Algorithm") != ALGORITHM or not scope or not one("X-Amz-Signature"):
            return Refusal("AuthorizationQueryParametersError", "the presigned URL is not a SigV4 one", 400)
        signer = self._signer(scope, one("X-Amz-Security-Token") or None, environ)
        if isinstance(signer, Refusal):
            return signer
        try:
            signed_at = _parse_amz_date(one("X-Amz-Date"))
            expires = int(one("X-Amz-Expires") or "0")
        except ValueError:
            return Refusal("AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is malformed", 400)
        now = time.time()
        if now > signed_at + expires or signed_at > now + MAX_SKEW_SECONDS:
            return Refusal("AccessDenied", "Request has expired")
        expected = self._signature(
            environ, b"", scope, one("X-Amz-SignedHeaders") or "host", one("X-Amz-Date"), True, signer
        )
        if not hmac.compare_digest(expected, one("X-Amz-Signature")):
            return _mismatch()
        return None

    def _check_presigned_v2(self, environ: dict[str, Any], query: dict[str, list[str]]) -> Refusal | None:
        """An S3 URL presigned with Signature Version 2 (what boto3 still makes for S3 unless told ``s3v4``:
        AmazonS3/latest/userguide/RESTAuthentication.html, "Query string request authentication")."""
        token = (query.get("x-amz-security-token") or query.get("X-Amz-Security-Token") or [""])[0] or None
        signer = self._signer({"access_key": query["AWSAccessKeyId"][0], "service": "s3"}, token, environ)
        if isinstance(signer, Refusal):
            return signer
        expires = (query.get("Expires") or [""])[0]
        if not expires.isdigit():
            return Refusal("AccessDenied", "Query-string authentication requires the Expires parameter")
        if time.time() > int(expires):
            return Refusal("AccessDenied", "Request has expired")
        raw_uri = environ.get("REQUEST_URI") or environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        headers = HTTPHeaders()
        for key in ("CONTENT_TYPE", "HTTP_CONTENT_MD5"):
            if environ.get(key):
                headers[key.removeprefix("HTTP_").replace("_", "-").lower()] = environ[key]
        verifier = _V2Verifier(signer, expires)
        expected = verifier.get_signature(environ.get("REQUEST_METHOD", "GET"), urlsplit(raw_uri), headers)
        if not hmac.compare_digest(expected, query["Signature"][0]):
            return _mismatch()
        return None

    def _signer(self, scope: dict[str, str], token: str | None, environ: dict[str, Any]) -> BotoCredentials | Refusal:
        """The credential whose secret the request must be signed with: the run's key (no session token), or a
        role session's, which also needs its session token (``X-Amz-Security-Token``, "Use temporary credentials
        with AWS resources", IAM User Guide) and must not have expired (``ExpiredToken``). The session is left in
        ``environ["loupe.iam.session"]`` for the gateway's IAM check."""
        key = scope["access_key"]
        if hmac.compare_digest(key, self.credentials.access_key_id):
            return _boto(self.credentials)
        session = self.sessions.get(key)
        if session is None:
            if scope["service"] == "s3":
                return Refusal(
                    "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
                )
            return Refusal("InvalidClientTokenId", "The security token included in the request is invalid.")
        if not token or not hmac.compare_digest(token, session.session_token):
            if scope["service"] == "s3":
                return Refusal("InvalidToken", "The provided token is malformed or otherwise invalid.", 400)
            return Refusal("UnrecognizedClientException", "The security token included in the request is invalid.")
        if session.expired():
            return Refusal("ExpiredToken", "The security token included in the request is expired", 400)
        environ["loupe.iam.session"] = session
        return BotoCredentials(session.access_key_id, session.secret_access_key, session.session_token)

    def _signature(
        self,
        environ: dict[str, Any],
        body: bytes,
        scope: dict[str, str],
        signed_headers: str,
        amz_date: str,
        presigned: bool,
        credentials: BotoCredentials,
    ) -> str:
        """The signature botocore computes for the request as received, with the secret of its key."""
        raw_uri = environ.get("REQUEST_URI") or environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        path, _, raw_query = raw_uri.partition("?")
        if presigned:  # the signature is computed over the query without itself
            raw_query = "&".join(p for p in raw_query.split("&") if p.partition("=")[0] != "X-Amz-Signature")
        url = f"http://{environ.get('HTTP_HOST', '')}{path}" + (f"?{raw_query}" if raw_query else "")
        headers = HTTPHeaders()
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers[key[5:].replace("_", "-").lower()] = value
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        request = AWSRequest(method=environ.get("REQUEST_METHOD", "GET"), url=url, data=body)
        request.headers = headers
        request.context["timestamp"] = amz_date
        names = [name.strip().lower() for name in signed_headers.split(";") if name.strip()]
        s3 = scope["service"] == "s3"
        base: type[SigV4Auth] = (
            (S3SigV4QueryAuth if s3 else SigV4QueryAuth) if presigned else (S3SigV4Auth if s3 else SigV4Auth)
        )
        signer = _verifier(base)(credentials, scope["service"], scope["region"])
        signer.signed_names = names
        canonical = signer.canonical_request(request)
        return signer.signature(signer.string_to_sign(request, canonical), request)


def _verifier(base: type[SigV4Auth]) -> type[SigV4Auth]:
    """``base`` signing exactly the headers the client signed (its SignedHeaders), not the ones botocore picks."""

    class Verifier(base):  # type: ignore[valid-type,misc]
        signed_names: list[str] = []

        def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
            chosen = HTTPHeaders()
            for name in self.signed_names:
                for value in request.headers.get_all(name) or []:
                    chosen[name] = value
            return chosen

    return Verifier


class _V2Verifier(HmacV1QueryAuth):
    """botocore's SigV2 query signer, at the URL's own Expires instead of now + its lifetime."""

    def __init__(self, credentials: BotoCredentials, expires: str) -> None:
        super().__init__(credentials)
        self._at = expires

    def _get_date(self) -> str:
        return self._at


def _mismatch() -> Refusal:
    return Refusal(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method.",
    )


def _parse_amz_date(value: str) -> float:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


def _is_hex_digest(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


# ---------------------------------------------------------------------------------------------- MQTT
MQTT_USERNAME = USERNAME  # the broker's one login; the client ID is the identity the policy checks


def mqtt_password(credentials: RunCredentials) -> str:
    """The local MQTT broker's password for this run (every client of it holds the run's credential)."""
    return base64.urlsafe_b64encode(bytes.fromhex(credentials.derive("loupe-local/mqtt"))).decode().rstrip("=")


def mqtt_login(client: Any, credentials: RunCredentials | None = None) -> None:
    """Log a paho client in to the local broker with this run's MQTT password (``credentials``, else the run's
    credential from the environment). The broker refuses anonymous clients."""
    creds = credentials or RunCredentials.from_env()
    if creds is None:
        raise RuntimeError("no run credential to log in to the local MQTT broker with (AWS_ACCESS_KEY_ID unset)")
    client.username_pw_set(MQTT_USERNAME, mqtt_password(creds))
