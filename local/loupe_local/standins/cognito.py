"""Cognito user pools: the app client's allowed sign-in flows, which moto does not enforce.

An app client lists the flows it accepts (``ExplicitAuthFlows``: ``ALLOW_USER_SRP_AUTH``, ...); Cognito refuses
InitiateAuth / AdminInitiateAuth with any other flow, with ``InvalidParameterException`` ("... flow not enabled
for this client"; Cognito Developer Guide, "Authentication flows" and the app client's ExplicitAuthFlows in the
API Reference of CreateUserPoolClient). moto 5.2.5 accepts every flow for every client; this stand-in refuses the
ones the client does not allow before moto sees the request, and lets moto answer the rest.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from botocore.exceptions import ClientError

from loupe_local.standins.base import AwsRequest, Response, StandIn, error

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


class CognitoFlows(StandIn):
    name = "cognito-auth-flows"

    def __init__(self) -> None:
        self._refusals: dict[int, Response] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def _client_flows(self, client_id: str, pool_id: str | None) -> list[str] | None:
        idp = self.runtime.client("cognito-idp")
        pools = [pool_id] if pool_id else [p["Id"] for p in idp.list_user_pools(MaxResults=60)["UserPools"]]
        for pool in pools:
            try:
                client = idp.describe_user_pool_client(UserPoolId=pool, ClientId=client_id)["UserPoolClient"]
            except ClientError:  # not this pool's client; moto answers an unknown client itself
                continue
            return list(client.get("ExplicitAuthFlows") or [])
        return None

    def handles(self, request: AwsRequest) -> bool:
        target = request.headers.get("x-amz-target", "")
        if target not in (f"{_PREFIX}InitiateAuth", f"{_PREFIX}AdminInitiateAuth"):
            return False
        try:
            body: dict[str, Any] = json.loads(request.body or b"{}")
        except ValueError:
            return False  # moto answers a malformed body with its own error
        flow = str(body.get("AuthFlow") or "")
        flows = self._client_flows(str(body.get("ClientId") or ""), body.get("UserPoolId"))
        if flows is None or flow not in ALLOWING:
            return False
        if ALLOWING[flow] in flows:
            return False
        with self._lock:
            self._refusals[id(request)] = error(
                "InvalidParameterException", f"{flow} flow not enabled for this client", 400
            )
            self.refused += 1
        log.info("refused %s: the app client allows only %s", flow, flows)
        return True

    def handle(self, request: AwsRequest) -> Response:
        with self._lock:
            return self._refusals.pop(id(request))

    def status(self) -> dict[str, Any]:
        return {"refused": self.refused}
