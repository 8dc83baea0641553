"""API Gateway HTTP API, payload format 2.0, for the local stand-in: the event a Lambda proxy integration receives,
and how API Gateway turns the function's answer into the HTTP response.

The shapes follow the API Gateway Developer Guide, "Create AWS Lambda proxy integrations for HTTP APIs"
(http-api-develop-integrations-lambda.html): header names lower-cased, repeated headers and query parameters joined
with commas, cookies in ``cookies``, a body base64-encoded unless it is text, and a function answer without
``statusCode`` taken as a 200 JSON body.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded", "+json", "+xml")


@dataclass
class HttpRequest:
    method: str
    path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ",".join(values) if values else None


@dataclass
class RouteMatch:
    route_key: str
    path_parameters: dict[str, str] = field(default_factory=dict)


def _is_text(content_type: str | None, body: bytes) -> bool:
    """A body passed as text: a text media type, or no Content-Type and UTF-8 bytes; anything else is base64."""
    if content_type is None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    if not any(kind.startswith(t) if t.endswith("/") else (kind == t or kind.endswith(t)) for t in _TEXT_TYPES):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def build_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    api_id: str,
    account_id: str,
    region: str,
    stage: str = "$default",
    claims: dict[str, Any] | None = None,
    scopes: list[str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The payload 2.0 event of ``request`` on the route ``match``, with the JWT authorizer's claims."""
    now = time.time() if now is None else now
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    domain = f"{api_id}.execute-api.{region}.amazonaws.com"
    request_context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": api_id,
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": request.header("user-agent") or "",
        },
        "requestId": uuid.uuid4().hex[:16],
        "routeKey": match.route_key,
        "stage": stage,
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if claims is not None:
        # the JWT authorizer hands claims on as strings (a list claim as "[a b]"), scopes as a list
        request_context["authorizer"] = {
            "jwt": {"claims": {k: _claim_text(v) for k, v in claims.items()}, "scopes": scopes}
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": match.route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": request_context,
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    if request.body:
        if _is_text(headers.get("content-type"), request.body):
            event["body"] = request.body.decode("utf-8")
        else:
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
    return event


def _claim_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def response_of(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """The HTTP response API Gateway makes of a function's payload 2.0 answer."""
    if isinstance(result, dict) and "statusCode" in result:
        status = int(result["statusCode"])
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(v)) for v in values)
        headers.extend(("set-cookie", str(c)) for c in result.get("cookies") or [])
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        return status, headers, data
    # no statusCode: "API Gateway assumes ... statusCode 200, content-type application/json, body = the response"
    return 200, [("content-type", "application/json")], json.dumps(result).encode()
