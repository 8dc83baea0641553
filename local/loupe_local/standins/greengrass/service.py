"""Greengrass v2 control plane stand-in: components, deployments to thing groups, per-device executions.

Answers the ``greengrassv2`` REST API (signing name ``greengrass``, paths under ``/greengrass/v2/``) at the local
endpoint with the service's shapes, and, on the IoT API, DescribeJob and ListJobExecutionsForJob for the IoT job
behind each deployment. This module routes; the API lives along its seams:

- ``components.py``: component versions (recipes, artifact digests) and the public catalogue;
- ``deployments.py``: deployments (idempotency, supersession, rollout, abort, timeouts) and their IoT jobs;
- ``devices.py``: core devices, and the two local-only routes local core devices
  (``loupe_local.devices.fleet``) use in place of the IoT jobs and shadows a real nucleus uses;
- ``account.py``: the account's Greengrass service role (``/greengrass/servicerole``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from loupe_local.standins.base import AwsRequest, Response, StandIn, StandInHost, error
from loupe_local.standins.greengrass import account
from loupe_local.standins.greengrass.components import ComponentStore, GreengrassError, sorted_versions
from loupe_local.standins.greengrass.deployments import DeploymentStore
from loupe_local.standins.greengrass.devices import CoreDevices
from loupe_local.template import ACCOUNT_ID

log = logging.getLogger("loupe_local.greengrass")

PREFIX = "/greengrass/v2/"


class GreengrassStandIn(StandIn):
    name = "greengrassv2"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.components = ComponentStore()
        self.deployments = DeploymentStore(self.components)
        self.core_devices = CoreDevices(self.deployments)
        self.service_role = account.ServiceRoleAssociation()
        c, d, dev = self.components, self.deployments, self.core_devices
        table: list[tuple[str, str, Callable[..., Response]]] = [
            ("POST", r"createComponentVersion", c.create_component_version),
            ("GET", r"components", c.list_components),
            ("GET", r"components/(?P<arn>.+)/metadata", c.describe_component),
            ("GET", r"components/(?P<arn>.+)/versions", c.list_component_versions),
            ("GET", r"components/(?P<arn>.+)", c.get_component),
            ("POST", r"deployments", d.create_deployment),
            ("GET", r"deployments", d.list_deployments),
            ("POST", r"deployments/(?P<id>[^/]+)/cancel", d.cancel_deployment),
            ("GET", r"deployments/(?P<id>[^/]+)", d.get_deployment),
            ("GET", r"coreDevices", dev.list_core_devices),
            ("GET", r"coreDevices/(?P<thing>[^/]+)/effectiveDeployments", dev.list_effective_deployments),
            ("GET", r"coreDevices/(?P<thing>[^/]+)/installedComponents", dev.list_installed_components),
            ("GET", r"coreDevices/(?P<thing>[^/]+)", dev.get_core_device),
            ("POST", r"local/coreDevices/(?P<thing>[^/]+)/sync", dev.device_sync),
            ("POST", r"local/coreDevices/(?P<thing>[^/]+)/deployments/(?P<id>[^/]+)/status", dev.device_status),
        ]
        self.routes = [(verb, re.compile(pattern), fn) for verb, pattern, fn in table]

    def attach(self, runtime: StandInHost) -> None:
        super().attach(runtime)
        self.components.attach(runtime, ACCOUNT_ID)
        self.deployments.attach(runtime)
        self.core_devices.attach(runtime)

    # ------------------------------------------------------------------ routing
    def handles(self, request: AwsRequest) -> bool:
        if request.path.startswith(PREFIX) or request.path.rstrip("/") == account.PATH:
            return True
        if request.method != "GET" or not unquote(request.path).startswith("/jobs/"):
            return False  # never wait for the lock here: a handler holding it may be reading S3 through us
        with self.lock:
            return self.deployments.job_of(request) is not None

    def handle(self, request: AwsRequest) -> Response:
        if request.path.rstrip("/") == account.PATH:
            with self.lock:
                return self.service_role.answer(request)
        try:
            with self.lock:
                job = None if request.path.startswith(PREFIX) else self.deployments.job_of(request)
                if job is not None:
                    dep, executions = job
                    if executions:
                        return self.deployments.list_job_executions(request, dep)
                    return self.deployments.describe_job(dep)
        except GreengrassError as exc:
            return exc.response
        path = unquote(request.path[len(PREFIX) :]).rstrip("/")
        for verb, pattern, fn in self.routes:
            match = pattern.fullmatch(path)
            if verb == request.method and match:
                try:
                    with self.lock:
                        return fn(request, **match.groupdict())
                except GreengrassError as exc:
                    return exc.response
        return error(
            "NotImplemented", f"the local Greengrass stand-in does not answer {request.method} {request.path}", 501
        )

    # ------------------------------------------------------------------ observability
    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "components": {n: sorted_versions(list(v)) for n, v in self.components.private.items()},
                "deployments": [
                    {
                        "id": d["deploymentId"],
                        "target": d["targetArn"].rsplit("/", 1)[-1],
                        "status": d["deploymentStatus"],
                        "components": {k: v.get("componentVersion") for k, v in d["components"].items()},
                        "devices": {
                            t: {"status": e["status"], "reason": e["reason"]} for t, e in d["executions"].items()
                        },
                    }
                    for d in sorted(self.deployments.deployments.values(), key=lambda d: d["creationTimestamp"])[-5:]
                ],
                "core_devices": {
                    n: {"status": d["status"], "last": d["last"]} for n, d in self.core_devices.devices.items()
                },
            }
