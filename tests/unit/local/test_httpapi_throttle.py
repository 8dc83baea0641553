"""Throttling of the local HTTP API: the stage's limits, per route, by token bucket (429 before the authorizer or
the integration runs); a route's own settings override the stage default; the template's stage limits are read."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from loupe_local.standins.httpapi.events import HttpRequest
from loupe_local.standins.httpapi.service import HttpApiServer, TokenBucket, throttles_of
from loupe_local.template import load_sam_app

REPO = Path(__file__).resolve().parents[3]
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:f"
INTEGRATION = {"uri": f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{FUNCTION}/invocations"}


class Lambda:
    """The integration: records each invocation and answers 200."""

    def __init__(self) -> None:
        self.invoked: list[str] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invoked.append(kwargs["FunctionName"])
        return {"Payload": io.BytesIO(b'{"statusCode": 200, "body": "ok"}')}


class Host:
    endpoint = "http://127.0.0.1:1"
    region = "us-east-1"

    def __init__(self) -> None:
        self.lambda_ = Lambda()

    def client(self, service: str) -> Lambda:
        assert service == "lambda"
        return self.lambda_


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _body() -> dict[str, Any]:
    # no authorizer on these routes: a request that is not throttled goes on to the integration
    return {
        "paths": {
            "/a": {"get": {"x-amazon-apigateway-integration": INTEGRATION}},
            "/b": {"get": {"x-amazon-apigateway-integration": INTEGRATION}},
        }
    }


def _server(stage: dict[str, Any], clock: Clock) -> tuple[HttpApiServer, list[str]]:
    host = Host()
    server = HttpApiServer(host, "Api", "api1", _body(), stage, clock)  # type: ignore[arg-type]
    return server, host.lambda_.invoked


def _get(server: HttpApiServer, path: str) -> tuple[int, bytes]:
    status, _, body = server.handle(HttpRequest("GET", path, "", [], b""))
    return status, body


def test_a_burst_beyond_the_bucket_is_refused_with_429_and_the_integration_never_runs() -> None:
    clock = Clock()
    server, invoked = _server({"DefaultRouteSettings": {"ThrottlingBurstLimit": 3, "ThrottlingRateLimit": 2}}, clock)
    answers = [_get(server, "/a") for _ in range(5)]
    assert [status for status, _ in answers] == [200, 200, 200, 429, 429]
    assert answers[-1][1] == b'{"message": "Too Many Requests"}'
    assert len(invoked) == 3 and server.throttled == 2
    clock.now += 0.5  # 2 tokens a second: one token back after half a second
    assert [_get(server, "/a")[0] for _ in range(2)] == [200, 429]
    clock.now += 60  # refilled, but never beyond the burst
    assert [_get(server, "/a")[0] for _ in range(4)] == [200, 200, 200, 429]


def test_each_route_has_its_own_bucket_and_its_own_settings_win() -> None:
    clock = Clock()
    stage = {
        "DefaultRouteSettings": {"ThrottlingBurstLimit": 2, "ThrottlingRateLimit": 1},
        "RouteSettings": {"GET /b": {"ThrottlingBurstLimit": 4}},
    }
    server, _ = _server(stage, clock)
    assert [_get(server, "/a")[0] for _ in range(3)] == [200, 200, 429]
    # /a's empty bucket does not touch /b, whose own burst of 4 replaces the stage default of 2
    assert [_get(server, "/b")[0] for _ in range(5)] == [200, 200, 200, 200, 429]


def test_a_limit_of_zero_refuses_every_request_and_no_settings_mean_no_local_throttle() -> None:
    clock = Clock()
    closed, invoked = _server({"DefaultRouteSettings": {"ThrottlingBurstLimit": 0, "ThrottlingRateLimit": 0}}, clock)
    assert _get(closed, "/a")[0] == 429 and not invoked
    open_, _ = _server({}, clock)
    assert {_get(open_, "/a")[0] for _ in range(50)} == {200}


def test_unmatched_paths_are_404_not_throttled() -> None:
    clock = Clock()
    server, _ = _server({"DefaultRouteSettings": {"ThrottlingBurstLimit": 0, "ThrottlingRateLimit": 0}}, clock)
    assert _get(server, "/nowhere")[0] == 404


def test_the_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    assert sum(bucket.take() for _ in range(25)) == 20
    clock.now += 0.35
    assert sum(bucket.take() for _ in range(10)) == 3


def test_the_templates_stage_limits_reach_the_stand_in() -> None:
    app = load_sam_app(REPO / "template.yaml", {})
    stages = [r for r in app.transformed["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    assert len(stages) == 1 and stages[0]["Properties"]["ApiId"] == {"Ref": "ConsoleApi"}
    default, per_route = throttles_of(stages[0]["Properties"])
    assert default == {"ThrottlingBurstLimit": 20, "ThrottlingRateLimit": 10}
    assert per_route == {"GET /web/{file+}": {"ThrottlingBurstLimit": 100, "ThrottlingRateLimit": 50}}
