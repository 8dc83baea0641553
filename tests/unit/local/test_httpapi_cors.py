"""CORS of the local HTTP API: only the configured app origin is granted anything; without a configuration,
nothing is (and the template's AppOrigin reaches the API's CORS configuration)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loupe_local.standins.httpapi.events import HttpRequest
from loupe_local.standins.httpapi.service import HttpApiServer
from loupe_local.template import load_sam_app

APP = "https://console.example.com"
REPO = Path(__file__).resolve().parents[3]


class Host:
    endpoint = "http://127.0.0.1:1"
    region = "us-east-1"


def _server(cors: dict[str, Any] | None) -> HttpApiServer:
    body: dict[str, Any] = {"paths": {}}
    if cors is not None:
        body["x-amazon-apigateway-cors"] = cors
    return HttpApiServer(Host(), "Api", "api1", body)  # type: ignore[arg-type]


def _preflight(origin: str) -> HttpRequest:
    headers = [("Origin", origin), ("Access-Control-Request-Method", "POST")]
    return HttpRequest("OPTIONS", "/models/1/approval", "", headers, b"")


CORS = {"allowOrigins": [APP], "allowMethods": ["GET", "POST"], "allowHeaders": ["authorization"], "maxAge": 600}


def test_the_app_origin_gets_its_preflight_answered() -> None:
    status, headers, _ = _server(CORS).handle(_preflight(APP))
    granted = dict(headers)
    assert status == 204 and granted["access-control-allow-origin"] == APP
    assert granted["access-control-allow-methods"] == "GET,POST"


def test_a_foreign_origin_gets_no_grant() -> None:
    status, headers, _ = _server(CORS).handle(_preflight("https://evil.example"))
    assert not [h for h, _ in headers if h.startswith("access-control-")]


def test_without_cors_a_preflight_is_just_an_unknown_route() -> None:
    status, headers, body = _server(None).handle(_preflight(APP))
    assert status == 404 and body == b'{"message": "Not Found"}'
    assert not [h for h, _ in headers if h.startswith("access-control-")]


def test_the_app_origin_parameter_is_the_apis_only_allowed_origin() -> None:
    app = load_sam_app(REPO / "template.yaml", {"AppOrigin": APP})
    cors = app.resources["ConsoleApi"]["Properties"]["Body"]["x-amazon-apigateway-cors"]
    condition, granted, otherwise = cors["Fn::If"]
    assert condition == "HasAppOrigin" and granted["allowOrigins"] == [APP]
    assert otherwise == {"Ref": "AWS::NoValue"}
