"""The IoT credentials provider: ``GET /role-aliases/{alias}/credentials`` at the local endpoint.

A core device exchanges its certificate for temporary credentials of the role its role alias names (IoT developer
guide, "Authorizing direct calls to AWS services using AWS IoT Core credential provider"; Greengrass developer guide,
"Authorize core devices to interact with AWS services"). AWS checks, and so does this stand-in:

1. the certificate: registered in IoT and ACTIVE. Locally the device proves it holds the certificate's private key
   by signing the request (``loupe_local.iot_credentials``): there is no mutual TLS on the loopback endpoint;
2. ``x-amzn-iot-thingname``, when sent: that thing is attached to the certificate (AttachThingPrincipal);
3. the role alias exists;
4. the certificate's IoT policies allow ``iot:AssumeRoleWithCertificate`` on the role alias' ARN (evaluated with
   ``loupe_local.iam.evaluate``: explicit deny wins);
5. the role trusts ``credentials.iot.amazonaws.com`` (its trust policy).

It then mints a session of the role with moto's STS for ``CredentialDurationSeconds``, named by the certificate id
(the session name the credentials provider gives), whose calls carry ``credentials-iot:ThingName``,
``credentials-iot:ThingTypeName`` and ``credentials-iot:AwsCertificateId`` (the policy variables the guide lists), and
registers it with the gatekeeper like the stack's other role sessions. The answer is the guide's
``{"credentials": {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}}``.

Refusals: 403 with ``x-amzn-ErrorType: AccessDeniedException`` and a ``{"message"}`` body, as the endpoint answers
(an unusable certificate: "Certificate is invalid on this endpoint"; a policy that does not allow the alias: "Access
Denied"; a role that does not trust the provider: "Unable to assume the role, or the role to assume does not exist",
the message Greengrass' token exchange service logs, Greengrass developer guide, "Troubleshooting AWS IoT Greengrass
V2"); 404 for an unknown role alias.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

from loupe_local.iam.evaluate import Policy, PolicyError, Request, evaluate
from loupe_local.iam.principals import RoleSession, mint, trusts
from loupe_local.iot_credentials import (
    CERTIFICATE_HEADER,
    DATE_HEADER,
    MAX_SKEW_SECONDS,
    SIGNATURE_HEADER,
    THING_HEADER,
    parse_stamp,
    string_to_sign,
    verify,
)
from loupe_local.standins.base import AwsRequest, Response, StandIn

log = logging.getLogger("loupe_local.credentials")

PATH = re.compile(r"^/role-aliases/(?P<alias>[\w=,@-]{1,128})/credentials$")
SERVICE_PRINCIPAL = "credentials.iot.amazonaws.com"
INVALID_CERTIFICATE = "Certificate is invalid on this endpoint"


def refusal(status: int, message: str, code: str = "AccessDeniedException") -> Response:
    return Response(
        status=status, body={"message": message}, headers={"Content-Type": "application/json", "x-amzn-ErrorType": code}
    )


class CredentialsProvider(StandIn):
    name = "iot-credentials-provider"

    def __init__(self) -> None:
        self.issued = 0
        self.refused = 0
        self._lock = threading.Lock()

    def handles(self, request: AwsRequest) -> bool:
        return request.method == "GET" and PATH.match(request.path) is not None

    def handle(self, request: AwsRequest) -> Response:
        match = PATH.match(request.path)
        assert match is not None
        out = self._answer(request, match.group("alias"))
        with self._lock:
            if out.status == 200:
                self.issued += 1
            else:
                self.refused += 1
        if out.status != 200:
            log.warning("credentials refused for %s: %s", request.headers.get(THING_HEADER), out.body)
        return out

    def status(self) -> dict[str, Any]:
        return {"issued": self.issued, "refused": self.refused}

    # ------------------------------------------------------------------ the checks, in AWS's order
    def _answer(self, request: AwsRequest, alias: str) -> Response:
        iot = self.runtime.client("iot")
        certificate = self._certificate(iot, request)
        if certificate is None:
            return refusal(403, INVALID_CERTIFICATE)
        cert_arn, cert_id = certificate["certificateArn"], certificate["certificateId"]
        thing = request.headers.get(THING_HEADER, "")
        thing_type = ""
        if thing:
            attached = iot.list_principal_things(principal=cert_arn).get("things", [])
            if thing not in attached:
                return refusal(403, "Access Denied")
            thing_type = str(iot.describe_thing(thingName=thing).get("thingTypeName") or "")
        try:
            described = iot.describe_role_alias(roleAlias=alias)["roleAliasDescription"]
        except iot.exceptions.ResourceNotFoundException:
            return refusal(404, "Role alias does not exist", "ResourceNotFoundException")
        if not self._policies_allow(iot, cert_arn, described["roleAliasArn"]):
            return refusal(403, "Access Denied")
        role_arn = described["roleArn"]
        try:
            role = self.runtime.client("iam").get_role(RoleName=role_arn.rsplit("/", 1)[-1])["Role"]
        except Exception:
            role = None
        if role is None or not trusts(role.get("AssumeRolePolicyDocument") or {}, role_arn, SERVICE_PRINCIPAL):
            return refusal(403, "Unable to assume the role, or the role to assume does not exist")
        context = {"credentials-iot:AwsCertificateId": cert_id}
        if thing:
            context["credentials-iot:ThingName"] = thing
        if thing_type:
            context["credentials-iot:ThingTypeName"] = thing_type
        duration = int(described.get("credentialDurationSeconds") or 3600)
        session = mint(self.runtime.client("sts"), role_arn, cert_id, duration, context)
        register = getattr(self.runtime, "register_session", None)
        if register is not None:
            register(session)
        return Response(200, {"credentials": _credentials(session)}, {"Content-Type": "application/json"})

    def _certificate(self, iot: Any, request: AwsRequest) -> dict[str, Any] | None:
        """The request's certificate as IoT holds it, when it is ACTIVE and the request is signed with its key."""
        cert_id = request.headers.get(CERTIFICATE_HEADER, "")
        date = request.headers.get(DATE_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not (re.fullmatch(r"[0-9a-f]{64}", cert_id) and date and signature):
            return None
        try:
            if abs(time.time() - parse_stamp(date)) > MAX_SKEW_SECONDS:
                return None
        except ValueError:
            return None
        try:
            description = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
        except iot.exceptions.ResourceNotFoundException:
            return None
        if description.get("status") != "ACTIVE":
            return None
        message = string_to_sign(
            request.method, request.path, request.headers.get("host", ""), request.headers.get(THING_HEADER, ""), date
        )
        if not verify(description.get("certificatePem", ""), message, signature):
            return None
        return description

    @staticmethod
    def _policies_allow(iot: Any, cert_arn: str, alias_arn: str) -> bool:
        policies = []
        for attached in iot.list_attached_policies(target=cert_arn).get("policies", []):
            document = iot.get_policy(policyName=attached["policyName"])["policyDocument"]
            try:
                policies.append(Policy.parse(attached["policyName"], _json(document)))
            except PolicyError as exc:
                log.warning("IoT policy %s cannot be evaluated: %s", attached["policyName"], exc)
        return evaluate(policies, Request("iot:AssumeRoleWithCertificate", alias_arn, {})).allowed


def _json(document: Any) -> dict[str, Any]:
    import json

    return json.loads(document) if isinstance(document, str) else dict(document)


def _credentials(session: RoleSession) -> dict[str, str]:
    return {
        "accessKeyId": session.access_key_id,
        "secretAccessKey": session.secret_access_key,
        "sessionToken": session.session_token,
        "expiration": datetime.fromtimestamp(session.expiration, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
