"""Greengrass v2 core devices: ListCoreDevices, GetCoreDevice, ListInstalledComponents, ListEffectiveDeployments,
and the two local-only routes local core devices (``loupe_local.devices.fleet``) use in place of the IoT jobs and
shadows a real nucleus uses:

- ``POST /greengrass/v2/local/coreDevices/{thing}/sync``: heartbeat (installed components) → the deployment the
  device should run (``null`` while none is released to it),
- ``POST /greengrass/v2/local/coreDevices/{thing}/deployments/{id}/status``: IN_PROGRESS / SUCCEEDED / FAILED with
  a reason.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from loupe_local.standins.base import AwsRequest, Response, StandInHost
from loupe_local.standins.greengrass.components import GreengrassError, not_found
from loupe_local.standins.greengrass.deployments import TERMINAL, DeploymentStore, set_status

log = logging.getLogger("loupe_local.greengrass")


class CoreDevices:
    """The core devices that reported to the local control plane (by thing name), and what they run."""

    host: StandInHost  # set by attach: thing groups are read from its IoT

    def __init__(self, deployments: DeploymentStore) -> None:
        self.deployments = deployments
        self.devices: dict[str, dict[str, Any]] = {}

    def attach(self, host: StandInHost) -> None:
        self.host = host

    def _device(self, thing: str) -> dict[str, Any]:
        dev = self.devices.get(thing)
        if dev is None:
            raise not_found(f"core device {thing}")
        return dev

    def list_core_devices(self, request: AwsRequest) -> Response:
        group_arn = next(iter(request.query.get("thingGroupArn") or []), None)
        status = next(iter(request.query.get("status") or []), None)
        names = list(self.devices)
        if group_arn:
            members = set(self.deployments.target_things(group_arn))
            names = [n for n in names if n in members]
        out = [
            {
                "coreDeviceThingName": n,
                "status": self.devices[n]["status"],
                "lastStatusUpdateTimestamp": self.devices[n]["last"],
            }
            for n in sorted(names)
            if not status or self.devices[n]["status"] == status
        ]
        return Response(200, {"coreDevices": out})

    def get_core_device(self, request: AwsRequest, thing: str) -> Response:
        dev = self._device(thing)
        return Response(
            200,
            {
                "coreDeviceThingName": thing,
                "coreVersion": dev.get("coreVersion", "local"),
                "platform": dev.get("platform", "linux"),
                "architecture": dev.get("architecture", "amd64"),
                "status": dev["status"],
                "lastStatusUpdateTimestamp": dev["last"],
                "tags": {},
            },
        )

    def list_installed_components(self, request: AwsRequest, thing: str) -> Response:
        dev = self._device(thing)
        return Response(200, {"installedComponents": dev.get("installed", [])})

    def list_effective_deployments(self, request: AwsRequest, thing: str) -> Response:
        out = []
        for dep in sorted(self.deployments.deployments.values(), key=lambda d: d["creationTimestamp"], reverse=True):
            ex = dep["executions"].get(thing)
            if ex is None:
                continue
            self.deployments.refresh(dep)
            out.append(
                {
                    "deploymentId": dep["deploymentId"],
                    "deploymentName": dep["deploymentName"],
                    "iotJobId": dep["iotJobId"],
                    "iotJobArn": dep["iotJobArn"],
                    "targetArn": dep["targetArn"],
                    "coreDeviceExecutionStatus": ex["status"],
                    "reason": ex["reason"],
                    "creationTimestamp": ex["created"],
                    "modifiedTimestamp": ex["modified"],
                    "statusDetails": ex["details"],
                }
            )
        if not out and thing not in self.devices:
            raise not_found(f"core device {thing}")
        return Response(200, {"effectiveDeployments": out})

    def device_sync(self, request: AwsRequest, thing: str) -> Response:
        body = request.json()
        now = time.time()
        dev = self.devices.setdefault(thing, {"first": now})
        broken = [c for c in body.get("installed") or [] if c.get("lifecycleState") in ("BROKEN", "ERRORED")]
        dev.update(
            {
                "last": now,
                "status": "UNHEALTHY" if broken else "HEALTHY",
                "installed": body.get("installed") or [],
                "platform": body.get("platform", "linux"),
                "architecture": body.get("architecture", "amd64"),
                # GetCoreDevice's coreVersion: the nucleus version the device reports running
                **({"coreVersion": str(body["coreVersion"])} if body.get("coreVersion") else {}),
            }
        )
        groups = set(body.get("groups") or [])
        if not groups:
            try:
                groups = {
                    g["groupName"]
                    for g in self.host.client("iot").list_thing_groups_for_thing(thingName=thing)["thingGroups"]
                }
            except Exception:  # noqa: BLE001 - an unknown thing simply has no group deployments
                groups = set()
        candidates = []
        for dep in self.deployments.deployments.values():
            if not dep["isLatestForTarget"] or dep["deploymentStatus"] != "ACTIVE":
                continue
            target = dep["targetArn"]
            if (":thinggroup/" in target and target.rsplit("/", 1)[-1] in groups) or target.endswith(f":thing/{thing}"):
                candidates.append(dep)
        if not candidates:
            return Response(200, {"deployment": None})
        dep = max(candidates, key=lambda d: d["creationTimestamp"])
        self.deployments.add_target(dep, thing)  # joined the group after the deployment was created: it gets it too
        self.deployments.refresh(dep)
        self.deployments.rollout(dep)
        ex = dep["executions"].get(thing)
        if ex is None:  # the rollout has not reached this device yet: no job execution, nothing to run
            return Response(200, {"deployment": None, "waiting": "NOT_REACHED"})
        if ex["status"] == "CANCELED":
            return Response(200, {"deployment": None, "waiting": ex["status"]})
        return Response(
            200,
            {
                "deployment": {
                    **{
                        k: dep[k]
                        for k in (
                            "deploymentId",
                            "deploymentName",
                            "targetArn",
                            "components",
                            "deploymentPolicies",
                            "creationTimestamp",
                        )
                    },
                    "executionStatus": ex["status"],
                }
            },
        )

    def device_status(self, request: AwsRequest, thing: str, id: str) -> Response:
        dep = self.deployments.get(id)
        ex = dep["executions"].get(thing)
        if ex is None:  # UpdateJobExecution of a job execution that does not exist (yet)
            raise not_found(f"job execution of deployment {id} for {thing}")
        body = request.json()
        status = body.get("status", "")
        if status not in ("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"):
            raise GreengrassError(
                "ValidationException", f"status {status!r} is not IN_PROGRESS, SUCCEEDED, FAILED or REJECTED"
            )
        if ex["status"] in TERMINAL:
            return Response(200, {"accepted": False, "status": ex["status"]})
        set_status(ex, status, body.get("reason", ""), body.get("statusDetails"))
        if status == "IN_PROGRESS":
            ex["started"] = time.time()
        self.deployments.rollout(dep)
        log.info("device %s: deployment %s %s %s", thing, id, status, body.get("reason", ""))
        return Response(200, {"accepted": True, "status": ex["status"]})
