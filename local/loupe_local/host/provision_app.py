"""The provisioner's creators of the console app's resource types: the Cognito user pool, its app client and groups
(moto's Cognito), and the HTTP API (an ``AWS::ApiGatewayV2::Api`` with the OpenAPI body SAM generates, and its
stage). The HTTP API is recorded in moto (for its id) and served by the local stand-in
``loupe_local.standins.httpapi.service``, which reads the routes and the JWT authorizer from the body kept here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loupe_local.provisioned import CreatorContext, Provisioned

# AWS::Cognito::UserPool properties that CreateUserPool takes under the same name
_POOL_KEYS = (
    "Policies",
    "AutoVerifiedAttributes",
    "UsernameAttributes",
    "AliasAttributes",
    "AdminCreateUserConfig",
    "AccountRecoverySetting",
    "UserAttributeUpdateSettings",
    "Schema",
)


def _ints(value: Any, keys: tuple[str, ...]) -> Any:
    """Number properties that arrive as strings from a parameter (MinimumLength: !Ref ...)."""
    if isinstance(value, dict):
        return {k: (int(v) if k in keys else _ints(v, keys)) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v, keys) for v in value]
    return value


def user_pool(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("UserPoolName") or ctx.physical_name(logical_id, 128, lower=False)
    kwargs = {k: props[k] for k in _POOL_KEYS if k in props}
    kwargs = _ints(kwargs, ("MinimumLength", "TemporaryPasswordValidityDays", "Priority"))
    mfa = str(props.get("MfaConfiguration", "OFF"))
    idp = ctx.client("cognito-idp")
    pool = idp.create_user_pool(PoolName=name, MfaConfiguration=mfa, **kwargs)["UserPool"]
    if mfa != "OFF" and "SOFTWARE_TOKEN_MFA" in (props.get("EnabledMfas") or []):
        idp.set_user_pool_mfa_config(
            UserPoolId=pool["Id"], SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration=mfa
        )
    provider = f"cognito-idp.{pool['Arn'].split(':')[3]}.amazonaws.com/{pool['Id']}"
    return Provisioned(
        logical_id,
        "AWS::Cognito::UserPool",
        pool["Id"],
        {"Arn": pool["Arn"], "ProviderName": provider, "ProviderURL": f"https://{provider}", "UserPoolId": pool["Id"]},
    )


def user_pool_client(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    keys = (
        "ExplicitAuthFlows",
        "PreventUserExistenceErrors",
        "EnableTokenRevocation",
        "AccessTokenValidity",
        "IdTokenValidity",
        "RefreshTokenValidity",
        "TokenValidityUnits",
        "CallbackURLs",
        "LogoutURLs",
        "AllowedOAuthFlows",
        "AllowedOAuthScopes",
        "SupportedIdentityProviders",
    )
    kwargs = _ints(
        {k: props[k] for k in keys if k in props}, ("AccessTokenValidity", "IdTokenValidity", "RefreshTokenValidity")
    )
    client = ctx.client("cognito-idp").create_user_pool_client(
        UserPoolId=props["UserPoolId"],
        ClientName=props.get("ClientName") or ctx.physical_name(logical_id, 128, lower=False),
        GenerateSecret=str(props.get("GenerateSecret", False)).lower() == "true",
        **kwargs,
    )["UserPoolClient"]
    return Provisioned(logical_id, "AWS::Cognito::UserPoolClient", client["ClientId"], {"Name": client["ClientName"]})


def user_pool_group(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("GroupName") or ctx.physical_name(logical_id, 128, lower=False)
    ctx.client("cognito-idp").create_group(
        GroupName=name, UserPoolId=props["UserPoolId"], Description=props.get("Description", "")
    )
    return Provisioned(logical_id, "AWS::Cognito::UserPoolGroup", name)


def http_api(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    body = props.get("Body") or {}
    name = props.get("Name") or str((body.get("info") or {}).get("title") or ctx.physical_name(logical_id))
    api = ctx.client("apigatewayv2").create_api(Name=name, ProtocolType="HTTP")
    return Provisioned(
        logical_id,
        "AWS::ApiGatewayV2::Api",
        api["ApiId"],
        {"ApiEndpoint": api.get("ApiEndpoint", ""), "ApiId": api["ApiId"]},
    )


def http_api_stage(ctx: CreatorContext, logical_id: str, props: dict[str, Any]) -> Provisioned:
    return Provisioned(
        logical_id,
        "AWS::ApiGatewayV2::Stage",
        str(props.get("StageName", "$default")),
        skipped="one $default stage, served by the local HTTP API stand-in",
    )


CREATORS: dict[str, Callable[[CreatorContext, str, dict[str, Any]], Provisioned]] = {
    "AWS::Cognito::UserPool": user_pool,
    "AWS::Cognito::UserPoolClient": user_pool_client,
    "AWS::Cognito::UserPoolGroup": user_pool_group,
    "AWS::ApiGatewayV2::Api": http_api,
    "AWS::ApiGatewayV2::Stage": http_api_stage,
}
