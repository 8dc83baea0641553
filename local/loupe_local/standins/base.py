"""The seam for services moto lacks: a stand-in answers their API at the local endpoint, same boto3 shape.

The local AWS wraps moto's WSGI app: each request is offered to the registered stand-ins first (``handles``);
the first that claims it answers it (``handle``). Requests moto answers are shown to every stand-in afterwards
(``after``), so a stand-in can emit the events AWS would (e.g. a model package state change). A stand-in talks to
the rest of the local AWS only through boto3 clients from ``runtime.client(...)``, like any AWS client would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from loupe_local.runtime import LocalRuntime

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass
class AwsRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    service: str = ""
    region: str = ""
    target: str | None = None

    @classmethod
    def from_environ(cls, environ: dict[str, Any], body: bytes) -> AwsRequest:
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        match = _SCOPE.search(headers.get("authorization", ""))
        target = headers.get("x-amz-target")
        return cls(
            method=environ.get("REQUEST_METHOD", "GET"),
            path=environ.get("PATH_INFO", "/"),
            query=parse_qs(environ.get("QUERY_STRING", "")),
            headers=headers,
            body=body,
            service=match.group(2) if match else "",
            region=match.group(1) if match else "",
            target=target.rsplit(".", 1)[-1] if target else None,
        )

    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/x-amz-json-1.1", **self.headers}
        data = self.body if isinstance(self.body, bytes) else json.dumps(self.body, default=str).encode()
        headers["Content-Length"] = str(len(data))
        return self.status, headers, data


def error(code: str, message: str, status: int = 400) -> Response:
    """An AWS-style error both JSON and REST-JSON botocore parsers understand."""
    return Response(
        status=status,
        body={"__type": code, "message": message, "Message": message},
        headers={"x-amzn-ErrorType": code},
    )


class StandIn:
    """Base class: override ``handles``/``handle``; ``after``, ``attach`` and ``stop`` are optional."""

    name = "stand-in"

    def attach(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime

    def handles(self, request: AwsRequest) -> bool:
        return False

    def handle(self, request: AwsRequest) -> Response:
        return error("NotImplemented", f"{self.name} does not answer {request.target or request.path}", 501)

    def after(self, request: AwsRequest, status: int, body: bytes) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        return None
