"""The stage's throttling on the running local HTTP API: the template's limits (10 rps, burst 20) on every route of
the console API, a burst beyond them answered 429 before the authorizer, and service back once tokens refill."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from support.console_users import api, signed_in
from support.waiting import wait_for

from loupe_local.standins.httpapi.service import HttpApis, HttpApiServer


def _apis(local_aws: Any) -> HttpApis:
    return next(s for s in local_aws.standins if isinstance(s, HttpApis))


def test_every_console_route_carries_the_stages_limits(local_aws: Any) -> None:
    server = _apis(local_aws).servers["ConsoleApi"]
    assert server.routes and {r.key for r in server.routes} == set(server._buckets)
    # the web app's files have their own limit (a page load fetches four at once); every API route the stage's
    limits = {key: (b.rate, b.burst) for key, b in server._buckets.items()}
    assert limits.pop("GET /web/{file+}") == (50.0, 100)
    assert set(limits.values()) == {(10.0, 20)}


def test_a_burst_beyond_the_limit_gets_429_then_service_returns(local_aws: Any) -> None:
    # A server of its own over the same provisioned API and stage (the shared one's buckets serve other tests).
    provisioned = local_aws.resources
    api_res = provisioned["ConsoleApi"]
    stage = next(r for r in provisioned.values() if r.type == "AWS::ApiGatewayV2::Stage")
    server = HttpApiServer(local_aws, "ConsoleApi", str(api_res.ref), api_res.properties["Body"], stage.properties)
    base = server.start()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:  # no token: 401 when admitted, 429 when throttled
            answers = list(pool.map(lambda _: api(f"{base}/me"), range(60)))
        elapsed = time.monotonic() - started
        statuses = [status for status, _, _ in answers]
        admitted = statuses.count(401)
        assert set(statuses) <= {401, 429}, statuses
        assert 429 in statuses and admitted <= 20 + 10 * elapsed + 1, (admitted, elapsed)
        assert next(body for status, _, body in answers if status == 429) == {"message": "Too Many Requests"}
        user = signed_in(local_aws, "labelers")
        status = wait_for(lambda: api(f"{base}/me", token=user["id"])[0] == 200, 10, "a request admitted again")
        # the burst's 429s, and any the wait above met before a token came back
        assert status and server.throttled >= statuses.count(429)
    finally:
        server.stop()
