"""A moto cognito-idp client whose calls go through the local Cognito stand-in first, the way the local gateway
routes a request (``runtime._Gateway``): the stand-in answers what it claims, moto the rest. For unit tests of
:class:`loupe_local.standins.cognito.service.CognitoFlows` inside ``moto.mock_aws``."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from loupe_local.standins.base import AwsRequest
from loupe_local.standins.cognito.service import CognitoFlows

_TARGET = "AWSCognitoIdentityProviderService."


class StandInHost:
    """What the stand-in reaches of its runtime: the cognito-idp client."""

    def __init__(self, idp: Any) -> None:
        self.idp = idp

    def client(self, service: str) -> Any:
        assert service == "cognito-idp"
        return self.idp


def attached(idp: Any) -> CognitoFlows:
    standin = CognitoFlows()
    standin.attach(StandInHost(idp))  # type: ignore[arg-type]
    return standin


def console_like_pool(region: str, name: str, mfa: str = "OFF") -> dict[str, Any]:
    """Inside ``mock_aws``: a pool whose users sign in by e-mail, with the console's kind of app client (SRP and
    refresh only, user existence hidden) and ``mfa`` (software token), behind a stand-in of its own. Its ``idp``
    (moto's client), ``pool``, ``client``, ``standin`` and ``api`` (calls through the stand-in)."""
    import boto3

    idp = boto3.client("cognito-idp", region_name=region)
    pool_id = idp.create_user_pool(PoolName=name, UsernameAttributes=["email"], MfaConfiguration=mfa)["UserPool"]["Id"]
    if mfa != "OFF":
        idp.set_user_pool_mfa_config(
            UserPoolId=pool_id, SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration=mfa
        )
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="console",
        ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        PreventUserExistenceErrors="ENABLED",
    )["UserPoolClient"]["ClientId"]
    standin = attached(idp)
    return {
        "idp": idp,
        "pool": pool_id,
        "client": client_id,
        "standin": standin,
        "api": ThroughStandIn(idp, standin, region),
    }


class ThroughStandIn:
    """``api.initiate_auth(...)``, ``api.verify_software_token(...)``, ...: each operation offered to the stand-in
    first, then to moto's client, with the stand-in's refusals raised as botocore raises AWS's."""

    def __init__(self, idp: Any, standin: CognitoFlows, region: str) -> None:
        self.idp, self.standin, self.region = idp, standin, region

    def __getattr__(self, method: str) -> Any:
        operation = self.idp.meta.method_to_api_mapping[method]
        return lambda **params: self._call(operation, method, **params)

    def _call(self, operation: str, method: str, **params: Any) -> dict[str, Any]:
        request = AwsRequest(
            method="POST",
            path="/",
            query={},
            headers={"x-amz-target": f"{_TARGET}{operation}", "content-type": "application/x-amz-json-1.1"},
            body=json.dumps(params).encode(),
            service="cognito-idp",
            region=self.region,
            target=operation,
        )
        try:
            claimed = self.standin.handles(request)
        except Exception:  # as the gateway does: a stand-in that fails to inspect leaves it to moto
            claimed = False
        if not claimed:
            return dict(getattr(self.idp, method)(**params))
        answer = self.standin.handle(request)
        if answer.status != 200:
            raise ClientError({"Error": {"Code": answer.body["__type"], "Message": answer.body["message"]}}, operation)
        return dict(answer.body)
