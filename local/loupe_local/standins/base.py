"""The seam for services moto lacks: a stand-in answers their API at the local endpoint, same boto3 shape.

The local AWS wraps moto's WSGI app: each request is offered to the registered stand-ins first (``handles``);
the first that claims it answers it (``handle``). Requests moto answers are shown to every stand-in afterwards
(``after``), so a stand-in can emit the events AWS would (e.g. a model package state change). A stand-in talks to
the rest of the local AWS only through its :class:`StandInHost` (the running ``LocalRuntime``): boto3 clients from
``host.client(...)``, like any AWS client would, events through ``host.emit_event(...)``, and where the stack lives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from loupe_local.iam.principals import RoleSession
    from loupe_local.provisioned import Provisioned

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


class StandInHost(Protocol):
    """What a stand-in may use of the local AWS it is attached to (``loupe_local.host.runtime.LocalRuntime``)."""

    @property
    def endpoint(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def stack_name(self) -> str: ...

    @property
    def root(self) -> Path:
        """The repository: template.yaml, training/."""
        ...

    @property
    def state_dir(self) -> Path: ...

    @property
    def resources(self) -> Mapping[str, Provisioned]:
        """Logical id -> what the provisioner made of it."""
        ...

    @property
    def parameter_values(self) -> Mapping[str, Any]:
        """The stack's parameters as resolved (defaults applied)."""
        ...

    @property
    def groundtruth_customer(self) -> bool:
        """Whether the local account acts as an existing Ground Truth customer (read at each call)."""
        ...

    def client(self, service: str) -> Any:
        """A boto3 client bound to the local endpoint."""
        ...

    def physical(self, logical_id: str) -> str: ...

    def arn(self, logical_id: str) -> str: ...

    def client_as(self, role_arn: str, service: str) -> Any:
        """A client signing as ``role_arn``'s session (the role a service acts with: a pipeline's ``RoleArn``, a
        labeling job's), or None while IAM is off or no session exists for that role (then use ``client``)."""
        ...

    def role_environment(self, role_arn: str) -> dict[str, str] | None:
        """The ``AWS_ACCESS_KEY_ID``/``SECRET``/``SESSION_TOKEN`` of ``role_arn``'s session, for a process a
        service runs with that role (a training job's container); None as for ``client_as``."""
        ...

    def authorize_as(self, role_arn: str, service: str, operation: str, params: Mapping[str, Any]) -> str | None:
        """Check (and record) a call the service makes as ``role_arn`` that is no HTTP request locally (a pipeline
        starting a step's job); the AccessDenied message when it is refused (``enforce``), else None."""
        ...

    def emit_event(
        self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None
    ) -> None:
        """Put an event on the default bus, as an AWS service would."""
        ...

    def register_session(self, session: RoleSession) -> None:
        """Let the gatekeeper accept a role session a stand-in issued (the IoT credentials provider's); its calls
        are checked against the role's policies like every role session's."""
        ...


def role_client(host: StandInHost, role_arn: str | None, service: str) -> Any:
    """``service``'s client as ``role_arn`` acts with it when IAM is checked, else the host's own client. (A host
    without ``client_as``, a unit test's fake, is a local AWS whose IAM is off.)"""
    client_as = getattr(host, "client_as", None)
    client = client_as(role_arn, service) if role_arn and client_as is not None else None
    return client if client is not None else host.client(service)


def authorize_as(
    host: StandInHost, role_arn: str | None, service: str, operation: str, params: Mapping[str, Any]
) -> str | None:
    """The AccessDenied message when ``role_arn`` may not make this call and IAM is enforced, else None. (A host
    without ``authorize_as``, a unit test's fake, is a local AWS whose IAM is off.)"""
    authorize = getattr(host, "authorize_as", None)
    return authorize(role_arn, service, operation, params) if role_arn and authorize is not None else None


def role_environment(host: StandInHost, role_arn: str | None) -> dict[str, str]:
    """The credential variables of a process that runs as ``role_arn`` (empty when IAM is off: it inherits the
    run's key)."""
    environment = getattr(host, "role_environment", None)
    env = environment(role_arn) if role_arn and environment is not None else None
    return dict(env or {})


class StandIn:
    """Base class: override ``handles``/``handle``; ``after``, ``attach`` and ``stop`` are optional."""

    name = "stand-in"
    runtime: StandInHost

    def attach(self, runtime: StandInHost) -> None:
        self.runtime = runtime

    def handles(self, request: AwsRequest) -> bool:
        return False

    def handle(self, request: AwsRequest) -> Response:
        return error("NotImplemented", f"{self.name} does not answer {request.target or request.path}", 501)

    def after(self, request: AwsRequest, status: int, body: bytes) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {}

    def state(self) -> dict[str, Any]:
        """Keys this stand-in adds to ``.loupe/local.json`` (e.g. the URLs it serves)."""
        return {}

    def stop(self) -> None:
        return None
