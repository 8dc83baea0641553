"""The console app's identity and API in template.yaml: invited users only, SRP sign-in by default, every route
behind the JWT authorizer of the stack's own pool but the web app's own static files and its public configuration
(GET /, GET /web/{file+}, GET /config.json), CORS only for the AppOrigin parameter. Each rule is checked on
the template and on a copy that breaks it (so it cannot pass by checking nothing)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from loupe_local.template import load_yaml

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"


# the only routes without a token: the web app's files and its public configuration, GET only, served by the console
# function (loupe.console_api.static decides what they serve)
PUBLIC_ROUTES = {("GET", "/"), ("GET", "/web/{file+}"), ("GET", "/config.json")}


def problems(template: dict[str, Any]) -> list[str]:
    found = []
    resources = template["Resources"]
    pool = resources["ConsoleUserPool"]["Properties"]
    if pool.get("AdminCreateUserConfig", {}).get("AllowAdminCreateUserOnly") is not True:
        found.append("anyone may sign up to the pool")
    client = resources["ConsoleUserPoolClient"]["Properties"]
    if client.get("GenerateSecret") is not False:
        found.append("a browser client with a secret")
    flows = client["ExplicitAuthFlows"]
    condition, when_on, default = flows["Fn::If"]
    if template["Conditions"][condition] != {"Fn::Equals": [{"Ref": "ConsolePasswordSignIn"}, "true"]}:
        found.append("password sign-in is not the parameter's choice")
    if template["Parameters"]["ConsolePasswordSignIn"]["Default"] != "false" or sorted(default) != [
        "ALLOW_REFRESH_TOKEN_AUTH",
        "ALLOW_USER_SRP_AUTH",
    ]:
        found.append("the default client allows more than SRP and refresh")
    api = resources["ConsoleApi"]["Properties"]
    auth = api["Auth"]
    jwt = auth["Authorizers"][auth["DefaultAuthorizer"]]["JwtConfiguration"]
    if jwt["issuer"] != {"Fn::Sub": "https://cognito-idp.${AWS::Region}.amazonaws.com/${ConsoleUserPool}"}:
        found.append("the authorizer trusts another issuer")
    if jwt["audience"] != [{"Ref": "ConsoleUserPoolClient"}]:
        found.append("the authorizer accepts another audience")
    for name, fn in resources.items():
        for event_name, event in (fn.get("Properties", {}).get("Events") or {}).items():
            if event.get("Type") != "HttpApi" or "Auth" not in event["Properties"]:
                continue
            props = event["Properties"]
            public = (props.get("Method"), props.get("Path")) in PUBLIC_ROUTES and name == "ConsoleApiFunction"
            if not public or props["Auth"] != {"Authorizer": "NONE"}:
                found.append(f"{name}.{event_name} overrides the default authorizer")
    cors = api["CorsConfiguration"]["Fn::If"]
    if cors[0] != "HasAppOrigin" or cors[1]["AllowOrigins"] != [{"Ref": "AppOrigin"}]:
        found.append("CORS grants an origin other than AppOrigin")
    if "*" in str(cors[1].get("AllowOrigins")) or cors[2] != {"Ref": "AWS::NoValue"}:
        found.append("CORS without AppOrigin")
    if "AccessLogSettings" not in api or "DefaultRouteSettings" not in api:
        found.append("no access log or throttling")
    return found


def test_the_template_holds() -> None:
    assert problems(load_yaml(TEMPLATE)) == []


def _break(template: dict[str, Any], how: str) -> None:
    res = template["Resources"]
    if how == "signup":
        res["ConsoleUserPool"]["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] = False
    elif how == "password-default":
        res["ConsoleUserPoolClient"]["Properties"]["ExplicitAuthFlows"]["Fn::If"][2].append("ALLOW_USER_PASSWORD_AUTH")
    elif how == "route-without-auth":
        res["ConsoleApiFunction"]["Properties"]["Events"]["Me"]["Properties"]["Auth"] = {"Authorizer": "NONE"}
    elif how == "public-post":
        res["ConsoleApiFunction"]["Properties"]["Events"]["WebFile"]["Properties"]["Method"] = "POST"
    elif how == "public-everything":
        res["ConsoleApiFunction"]["Properties"]["Events"]["WebFile"]["Properties"]["Path"] = "/{proxy+}"
    elif how == "any-origin":
        res["ConsoleApi"]["Properties"]["CorsConfiguration"]["Fn::If"][1]["AllowOrigins"] = ["*"]
    elif how == "other-audience":
        auth = res["ConsoleApi"]["Properties"]["Auth"]["Authorizers"]["ConsoleUsers"]["JwtConfiguration"]
        auth["audience"].append("another-client")


@pytest.mark.parametrize(
    "how",
    [
        "signup",
        "password-default",
        "route-without-auth",
        "public-post",
        "public-everything",
        "any-origin",
        "other-audience",
    ],
)
def test_each_rule_catches_its_break(how: str) -> None:
    template = copy.deepcopy(load_yaml(TEMPLATE))
    _break(template, how)
    assert problems(template), how
