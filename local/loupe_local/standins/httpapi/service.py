"""Local stand-in of API Gateway HTTP APIs: each ``AWS::ApiGatewayV2::Api`` of the template (SAM's OpenAPI body:
routes, Lambda proxy integrations, the JWT authorizer, CORS) served on its own loopback port.

A request is matched to a route (``GET /models/{package}/approval``; 404 ``{"message":"Not Found"}`` otherwise),
its JWT checked as the authorizer documents (:mod:`.auth`; 401 ``{"message":"Unauthorized"}``), turned into
a payload 2.0 event (:mod:`.events`) and handed to the function through the local Lambda ``Invoke`` (so
the real handler runs through the runtime's invoker). With a CORS configuration API Gateway answers preflights
itself and grants only the configured origins; without one nothing grants a browser origin anything
(Developer Guide, "Configuring CORS for an HTTP API"). The stage's throttling is enforced per route with a token
bucket (:class:`TokenBucket`), answering 429 ``{"message":"Too Many Requests"}`` as API Gateway does.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loupe_local.standins.base import StandIn, StandInHost
from loupe_local.standins.httpapi.auth import JwtAuthorizer, Unauthorized, cognito_jwks_url, fetch_json
from loupe_local.standins.httpapi.events import HttpRequest, RouteMatch, build_event, response_of

log = logging.getLogger("loupe_local.httpapi")

_FUNCTION = re.compile(r"functions/(arn:[^/]+)/invocations")
MAX_BODY = 10 * 1024 * 1024  # HTTP API payload quota: 10 MB


@dataclass
class Route:
    method: str  # "ANY" for x-amazon-apigateway-any-method
    path: str
    function: str
    authorizer: str | None
    scopes: list[str]
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        parts = []
        for segment in self.path.strip("/").split("/"):
            if segment.startswith("{") and segment.endswith("+}"):
                parts.append(f"(?P<{segment[1:-2]}>.+)")
            elif segment.startswith("{") and segment.endswith("}"):
                parts.append(f"(?P<{segment[1:-1]}>[^/]+)")
            else:
                parts.append(re.escape(segment))
        self.pattern = re.compile("^/" + "/".join(parts) + "$")

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


class TokenBucket:
    """API Gateway's throttle: a bucket of ``burst`` tokens refilled at ``rate`` per second; a request takes one
    token or is refused (Developer Guide, "Throttling requests to your HTTP API": token bucket algorithm, burst =
    the bucket's size, 429 Too Many Requests). A rate or burst of 0 refuses every request, as a stage set to 0
    does."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


def throttles_of(stage: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """The stage's ``DefaultRouteSettings`` and its per-route ``RouteSettings`` (keyed by route key), each kept only
    when it sets a throttling limit."""

    def limits(settings: Any) -> dict[str, Any] | None:
        if not isinstance(settings, dict):
            return None
        picked = {k: settings[k] for k in ("ThrottlingRateLimit", "ThrottlingBurstLimit") if k in settings}
        return picked or None

    per_route = {key: lim for key, value in (stage.get("RouteSettings") or {}).items() if (lim := limits(value))}
    return limits(stage.get("DefaultRouteSettings")), per_route


def routes_of(body: dict[str, Any]) -> list[Route]:
    """The routes of an HTTP API's OpenAPI body (as SAM writes it)."""
    default_security = body.get("security") or []
    routes = []
    for path, item in (body.get("paths") or {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "x-amazon-apigateway-integration" not in op:
                continue
            uri = json.dumps(op["x-amazon-apigateway-integration"].get("uri", ""))
            found = _FUNCTION.search(uri)
            if not found:
                raise ValueError(f"{method} {path}: only Lambda proxy integrations are served locally")
            security = op.get("security", default_security) or [{}]
            name, scopes = next(iter(security[0].items()), (None, []))
            if name == "NONE":
                # SAM writes a route's `Auth: {Authorizer: NONE}` as the security entry NONE: the route has no
                # authorizer (SAM Developer Guide, HttpApiFunctionAuth: "Authorizer ... NONE")
                name, scopes = None, []
            verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
            routes.append(Route(verb, path, found.group(1), name, list(scopes or [])))
    return routes


class HttpApiServer:
    """One HTTP API on a loopback port."""

    def __init__(
        self,
        host: StandInHost,
        logical_id: str,
        api_id: str,
        body: dict[str, Any],
        stage: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.logical_id = logical_id
        self.api_id = api_id
        self.routes = routes_of(body)
        self.cors = body.get("x-amazon-apigateway-cors") or None
        schemes = (body.get("components") or {}).get("securitySchemes") or {}
        self.authorizers: dict[str, JwtAuthorizer] = {}
        for name, scheme in schemes.items():
            config = (scheme.get("x-amazon-apigateway-authorizer") or {}).get("jwtConfiguration")
            if config:
                url = cognito_jwks_url(config["issuer"], host.endpoint)
                self.authorizers[name] = JwtAuthorizer(
                    config["issuer"], list(config.get("audience") or []), functools.partial(fetch_json, url)
                )
        # Route-level throttling: the stage's default limits apply to each route separately, a route's own
        # RouteSettings override them (Developer Guide, "Throttling requests to your HTTP API" → Route-level
        # throttling). A limit left out means the account's limit, which a laptop does not reach.
        default, per_route = throttles_of(stage or {})
        self._buckets: dict[str, TokenBucket] = {}
        for route in self.routes:
            limits = {**(default or {}), **(per_route.get(route.key) or {})}
            if limits:
                rate = float(limits.get("ThrottlingRateLimit", 10_000))
                burst = int(limits.get("ThrottlingBurstLimit", 5_000))
                self._buckets[route.key] = TokenBucket(rate, burst, clock)
        self.throttled = 0
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.requests = 0

    # ------------------------------------------------------------------ routing
    def match(self, method: str, path: str) -> tuple[Route, RouteMatch] | None:
        best: tuple[Route, RouteMatch] | None = None
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            found = route.pattern.match(path)
            if found and (best is None or route.method != "ANY"):
                best = (route, RouteMatch(route.key, dict(found.groupdict())))
        return best

    def _cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        if not self.cors or not origin:
            return []
        allowed = self.cors.get("allowOrigins") or []
        if origin not in allowed and "*" not in allowed:
            return []
        headers = [("access-control-allow-origin", origin), ("vary", "origin")]
        if self.cors.get("exposeHeaders"):
            headers.append(("access-control-expose-headers", ",".join(self.cors["exposeHeaders"])))
        if self.cors.get("allowCredentials"):
            headers.append(("access-control-allow-credentials", "true"))
        return headers

    def _preflight(self, request: HttpRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self.cors is not None
        headers = self._cors_headers(request.header("origin"))
        wanted = (request.header("access-control-request-method") or "").upper()
        methods = [m.upper() for m in self.cors.get("allowMethods") or []]
        if headers and (wanted in methods or "*" in methods):
            headers += [
                ("access-control-allow-methods", ",".join(methods)),
                ("access-control-allow-headers", ",".join(self.cors.get("allowHeaders") or [])),
            ]
            if self.cors.get("maxAge") is not None:
                headers.append(("access-control-max-age", str(self.cors["maxAge"])))
        else:
            headers = []
        return 204, headers, b""

    def handle(self, request: HttpRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        self.requests += 1
        if (
            self.cors
            and request.method == "OPTIONS"
            and request.header("origin")
            and request.header("access-control-request-method")
        ):
            return self._preflight(request)
        if len(request.body) > MAX_BODY:
            return _message(413, "Request Entity Too Large")
        found = self.match(request.method, request.path)
        if found is None:
            return _message(404, "Not Found")
        route, match = found
        bucket = self._buckets.get(route.key)
        if bucket is not None and not bucket.take():
            # API Gateway throttles before the authorizer and the integration run.
            self.throttled += 1
            return _message(429, "Too Many Requests", self._cors_headers(request.header("origin")))
        claims = None
        scopes: list[str] | None = None
        if route.authorizer:
            authorizer = self.authorizers.get(route.authorizer)
            if authorizer is None:
                return _message(500, "Internal Server Error")
            try:
                claims = authorizer.authorize(request.header("authorization"), route.scopes)
            except Unauthorized as exc:
                log.info("401 %s %s: %s", request.method, request.path, exc)
                return _message(401, "Unauthorized", self._cors_headers(request.header("origin")))
            scopes = route.scopes or None
        region = self.host.region
        account = route.function.split(":")[4]
        event = build_event(
            request, match, api_id=self.api_id, account_id=account, region=region, claims=claims, scopes=scopes
        )
        answer = self.host.client("lambda").invoke(
            FunctionName=route.function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        payload = answer["Payload"].read()
        if answer.get("FunctionError"):
            log.warning("%s failed: %s", route.function, payload[:500])
            return _message(500, "Internal Server Error")
        try:
            result = json.loads(payload or b"null")
            status, headers, data = response_of(result)
        except (ValueError, TypeError) as exc:
            log.warning("%s answered what API Gateway cannot map: %s", route.function, exc)
            return _message(500, "Internal Server Error")
        return status, headers + self._cors_headers(request.header("origin")), data

    # ------------------------------------------------------------------ serving
    def wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(min(length, MAX_BODY + 1)) if length else b""
        headers = [
            (key[5:].replace("_", "-").lower(), value) for key, value in environ.items() if key.startswith("HTTP_")
        ]
        if environ.get("CONTENT_TYPE"):
            headers.append(("content-type", environ["CONTENT_TYPE"]))
        request = HttpRequest(
            method=environ.get("REQUEST_METHOD", "GET"),
            path=environ.get("PATH_INFO", "/"),
            raw_query=environ.get("QUERY_STRING", ""),
            headers=headers,
            body=body,
            source_ip=environ.get("REMOTE_ADDR", "127.0.0.1"),
            protocol=environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
        )
        try:
            status, out_headers, data = self.handle(request)
        except Exception:
            log.exception("local HTTP API %s failed on %s %s", self.logical_id, request.method, request.path)
            status, out_headers, data = _message(500, "Internal Server Error")
        out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
        out_headers.append(("content-length", str(len(data))))
        out_headers.append(("apigw-requestid", "local"))
        start_response(f"{status} X", out_headers)
        return [data]

    def start(self) -> str:
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"httpapi-{self.logical_id}", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)


def _message(
    status: int, message: str, headers: list[tuple[str, str]] | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("content-type", "application/json"), *(headers or [])], json.dumps({"message": message}).encode()


class HttpApis(StandIn):
    """Serves every HTTP API of the template; ``urls`` (logical id -> base URL) go into ``.loupe/local.json``."""

    name = "http-apis"

    def __init__(self) -> None:
        self.servers: dict[str, HttpApiServer] = {}

    def attach(self, runtime: StandInHost) -> None:
        super().attach(runtime)
        stages = {
            str(res.properties.get("ApiId")): res.properties
            for res in runtime.resources.values()
            if res.type == "AWS::ApiGatewayV2::Stage"
        }
        for logical_id, res in runtime.resources.items():
            if res.type != "AWS::ApiGatewayV2::Api" or res.ref is None or "Body" not in res.properties:
                continue
            stage = stages.get(str(res.ref))
            server = HttpApiServer(runtime, logical_id, str(res.ref), res.properties["Body"], stage)
            server.start()
            self.servers[logical_id] = server
            log.info("HTTP API %s at %s (%d routes)", logical_id, server.url, len(server.routes))

    @property
    def urls(self) -> dict[str, str]:
        return {logical_id: server.url for logical_id, server in self.servers.items()}

    def state(self) -> dict[str, Any]:
        return {"http_apis": self.urls}

    def status(self) -> dict[str, Any]:
        return {
            lid: {"url": s.url, "requests": s.requests, "throttled": s.throttled} for lid, s in self.servers.items()
        }

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
