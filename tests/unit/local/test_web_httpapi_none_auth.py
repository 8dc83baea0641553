"""The local HTTP API reads a route SAM marked ``Auth: {Authorizer: NONE}`` as a route without an authorizer, and
every other route keeps the API's default authorizer."""

from __future__ import annotations

from loupe_local.standins.httpapi.service import routes_of

FUNCTION = "arn:aws:lambda:us-east-1:1:function:f"
URI = {"Fn::Sub": f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{FUNCTION}/invocations"}


def _op(**extra: object) -> dict[str, object]:
    return {"x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": URI}, **extra}


def test_a_route_marked_none_has_no_authorizer_and_the_others_keep_the_default() -> None:
    body = {
        "security": [{"ConsoleUsers": []}],
        "paths": {
            "/config.json": {"get": _op(security=[{"NONE": []}])},
            "/me": {"get": _op()},
            "/models": {"get": _op(security=[{"ConsoleUsers": []}])},
        },
    }
    routes = {route.key: route.authorizer for route in routes_of(body)}
    assert routes == {"GET /config.json": None, "GET /me": "ConsoleUsers", "GET /models": "ConsoleUsers"}
