"""The gate lets the IoT credentials provider's route in unsigned (a device proves its certificate there, not a
SigV4 key), and only that route, only for GET, and only to the stand-in: never to moto, which would take an unsigned
GET for S3."""

from __future__ import annotations

import io
from typing import Any

from loupe_local.host.runtime import _Gateway
from loupe_local.local_auth import Gatekeeper, RunCredentials
from loupe_local.standins.base import AwsRequest, Response, StandIn

PORT = 4599


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "application/xml")])
        return [b"<moto/>"]


class Provider(StandIn):
    name = "provider"

    def handles(self, request: AwsRequest) -> bool:
        return request.path.endswith("/credentials")

    def handle(self, request: AwsRequest) -> Response:
        return Response(200, {"credentials": {}})


def call(gateway: _Gateway, method: str, path: str) -> int:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "HTTP_HOST": f"127.0.0.1:{PORT}",
        "wsgi.input": io.BytesIO(b""),
    }
    seen: dict[str, int] = {}

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        seen["status"] = int(status.split(" ", 1)[0])

    b"".join(gateway(environ, start_response))
    return seen["status"]


def gateway(standins: list[StandIn]) -> tuple[_Gateway, Recorder]:
    moto = Recorder()
    return _Gateway(moto, standins, Gatekeeper(RunCredentials("LOUPEKEY", "secret"), PORT)), moto


def test_the_credentials_route_reaches_the_provider_unsigned() -> None:
    gate, moto = gateway([Provider()])
    assert call(gate, "GET", "/role-aliases/stk-edge-token-exchange/credentials") == 200
    assert moto.calls == []


def test_without_a_provider_the_route_is_not_found_and_never_reaches_moto() -> None:
    gate, moto = gateway([])
    assert call(gate, "GET", "/role-aliases/stk-edge-token-exchange/credentials") == 404
    assert moto.calls == []


def test_other_unsigned_requests_are_still_refused() -> None:
    gate, moto = gateway([Provider()])
    assert call(gate, "GET", "/role-aliases/stk-edge-token-exchange") == 403  # DescribeRoleAlias needs a key
    assert call(gate, "POST", "/role-aliases/stk-edge-token-exchange/credentials") == 403
    assert call(gate, "GET", "/role-aliases/stk/credentials/more") == 403
    assert moto.calls == []
