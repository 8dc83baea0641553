"""What a local core device talks to: the Greengrass control plane (injected into ``Device``).

A real nucleus reads its deployments from IoT jobs and shadows; a local device uses the Greengrass stand-in's two
local routes instead (``standins/greengrass_devices.py``): ``sync`` (heartbeat → the deployment to run) and a
deployment's ``status``. Component recipes come from the ``greengrassv2`` API, artifacts from S3, the thing and its
group from IoT, all at the local endpoint. Tests give a ``Device`` their own control plane (a fake ``gg``, recorded
reports) instead of overwriting a device's attributes.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from typing import Any, Protocol

from loupe_local.local_auth import RunCredentials, sign_request


class ControlPlane(Protocol):
    """What a ``Device`` uses of the control plane."""

    @property
    def gg(self) -> Any:
        """A greengrassv2 client: component versions and their recipes (public ones included)."""
        ...

    @property
    def s3(self) -> Any:
        """An S3 client: component artifacts."""
        ...

    def register(self, thing: str, thing_group: str) -> None:
        """Create the device's thing (once) and add it to its thing group."""
        ...

    def post(self, thing: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A call of the local device protocol: ``/sync`` or ``/deployments/{id}/status``."""
        ...


class LocalControlPlane:
    """The control plane at the local endpoint: boto3 clients and the local device protocol over HTTP."""

    def __init__(self, endpoint: str, region: str, credentials: RunCredentials) -> None:
        import boto3
        from botocore.config import Config

        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials  # the local AWS's run credential: it refuses requests not signed with it
        cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
        session = boto3.Session(
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            region_name=region,
        )
        self.s3 = session.client("s3", endpoint_url=endpoint, config=cfg)
        self.iot = session.client("iot", endpoint_url=endpoint, config=cfg)
        self.gg = session.client("greengrassv2", endpoint_url=endpoint, config=cfg)

    def register(self, thing: str, thing_group: str) -> None:
        with contextlib.suppress(self.iot.exceptions.ResourceAlreadyExistsException):
            self.iot.create_thing(thingName=thing)
        if thing_group:
            self.iot.add_thing_to_thing_group(thingGroupName=thing_group, thingName=thing)

    def post(self, thing: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.endpoint}/greengrass/v2/local/coreDevices/{thing}{path}"
        data = json.dumps(body).encode()
        headers = sign_request(
            self.credentials, "POST", url, "greengrass", self.region, data, {"Content-Type": "application/json"}
        )
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310 - the local endpoint
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - the local endpoint (http://127.0.0.1)
            return json.loads(resp.read() or b"{}")
