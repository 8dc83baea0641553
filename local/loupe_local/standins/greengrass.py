"""Greengrass v2 control plane stand-in: components, deployments to thing groups, per-device executions.

Answers the ``greengrassv2`` REST API (signing name ``greengrass``, paths under ``/greengrass/v2/``) at the local
endpoint with the service's shapes: CreateComponentVersion (stores the recipe, fetches every S3 artifact and
writes its SHA-256 digest into the recipe like the service; a recipe digest that does not match the bytes makes
the version FAILED), DescribeComponent, GetComponent, ListComponents, ListComponentVersions, CreateDeployment
(``clientToken`` idempotency; a new deployment to a target supersedes the previous one), GetDeployment,
ListDeployments, CancelDeployment, ListEffectiveDeployments, ListCoreDevices, GetCoreDevice,
ListInstalledComponents; and, on the IoT API, DescribeJob and ListJobExecutionsForJob (paged) for the IoT job
behind each deployment (``iotJobId``), as Greengrass runs deployments as IoT jobs.

Local core devices (``loupe_local.devices``) use two extra, local-only routes in place of the IoT jobs and
shadows a real nucleus uses:

- ``POST /greengrass/v2/local/coreDevices/{thing}/sync``: heartbeat (installed components) → the deployment the
  device should run (``null`` while none is released to it),
- ``POST /greengrass/v2/local/coreDevices/{thing}/deployments/{id}/status``: IN_PROGRESS / SUCCEEDED / FAILED with
  a reason.

Rollout (``exponentialRate``): the first ``baseRatePerMinute`` devices are released at once; each time
``rateIncreaseCriteria`` devices succeed, the batch grows by ``incrementFactor`` (locally by batch, not by wall
clock minute). Abort (``abortConfig``): when the failed share of finished devices reaches ``thresholdPercentage``
the devices not yet started are CANCELED. ``timeoutConfig.inProgressTimeoutInMinutes`` turns a device stuck
IN_PROGRESS into TIMED_OUT.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import time
import uuid
from typing import Any
from urllib.parse import unquote

import yaml

from loupe_local.standins.base import AwsRequest, Response, StandIn, error

log = logging.getLogger("loupe_local.greengrass")

PREFIX = "/greengrass/v2/"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELED", "REJECTED", "COMPLETED"}
FAILED_STATES = {"FAILED", "TIMED_OUT", "REJECTED"}
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class _Error(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.response = error(code, message, status)


def _not_found(what: str) -> _Error:
    return _Error("ResourceNotFoundException", f"{what} not found", 404)


class GreengrassStandIn(StandIn):
    name = "greengrassv2"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.components: dict[str, dict[str, dict[str, Any]]] = {}  # name -> version -> record
        self.deployments: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.region = "us-east-1"
        self.account = "123456789012"
        self.public = _public_catalogue(self.region)  # AWS-provided components (account "aws")

    def attach(self, runtime: Any) -> None:
        super().attach(runtime)
        self.region = runtime.region
        from loupe_local.template import ACCOUNT_ID

        self.account = ACCOUNT_ID
        self.public = _public_catalogue(self.region)

    # ------------------------------------------------------------------ routing
    def handles(self, request: AwsRequest) -> bool:
        if request.path.startswith(PREFIX):
            return True
        return request.method == "GET" and self._job_of(request) is not None

    def _job_of(self, request: AwsRequest) -> tuple[dict[str, Any], bool] | None:
        """(deployment, whether it asks for the executions) when the request is DescribeJob or
        ListJobExecutionsForJob on the IoT job of one of this stand-in's deployments."""
        match = re.fullmatch(r"/jobs/([^/]+)(/things)?", unquote(request.path).rstrip("/"))
        if not match:
            return None
        with self.lock:
            dep = next((d for d in self.deployments.values() if d["iotJobId"] == match.group(1)), None)
        return (dep, bool(match.group(2))) if dep is not None else None

    def handle(self, request: AwsRequest) -> Response:
        job = None if request.path.startswith(PREFIX) else self._job_of(request)
        if job is not None:
            try:
                with self.lock:
                    dep, executions = job
                    return self.list_job_executions(request, dep) if executions else self.describe_job(dep)
            except _Error as exc:
                return exc.response
        path = unquote(request.path[len(PREFIX) :]).rstrip("/")
        method = request.method
        routes: list[tuple[str, str, Any]] = [
            ("POST", r"createComponentVersion", self.create_component_version),
            ("GET", r"components", self.list_components),
            ("GET", r"components/(?P<arn>.+)/metadata", self.describe_component),
            ("GET", r"components/(?P<arn>.+)/versions", self.list_component_versions),
            ("GET", r"components/(?P<arn>.+)", self.get_component),
            ("POST", r"deployments", self.create_deployment),
            ("GET", r"deployments", self.list_deployments),
            ("POST", r"deployments/(?P<id>[^/]+)/cancel", self.cancel_deployment),
            ("GET", r"deployments/(?P<id>[^/]+)", self.get_deployment),
            ("GET", r"coreDevices", self.list_core_devices),
            ("GET", r"coreDevices/(?P<thing>[^/]+)/effectiveDeployments", self.list_effective_deployments),
            ("GET", r"coreDevices/(?P<thing>[^/]+)/installedComponents", self.list_installed_components),
            ("GET", r"coreDevices/(?P<thing>[^/]+)", self.get_core_device),
            ("POST", r"local/coreDevices/(?P<thing>[^/]+)/sync", self.device_sync),
            (
                "POST",
                r"local/coreDevices/(?P<thing>[^/]+)/deployments/(?P<id>[^/]+)/status",
                self.device_status,
            ),
        ]
        for verb, pattern, fn in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                try:
                    with self.lock:
                        return fn(request, **match.groupdict())
                except _Error as exc:
                    return exc.response
        return error("NotImplemented", f"the local Greengrass stand-in does not answer {method} {request.path}", 501)

    # ------------------------------------------------------------------ components
    def _component_arn(self, name: str, version: str | None = None) -> str:
        base = f"arn:aws:greengrass:{self.region}:{self.account}:components:{name}"
        return f"{base}:versions:{version}" if version else base

    def _parse_arn(self, arn: str) -> tuple[str, str | None]:
        match = re.fullmatch(r"arn:aws:greengrass:[^:]*:[^:]*:components:([^:]+)(?::versions:([^:]+))?", arn)
        if not match:
            raise _Error("ValidationException", f"{arn!r} is not a component ARN")
        return match.group(1), match.group(2)

    def _versions(self, arn: str) -> dict[str, dict[str, Any]]:
        """The versions of the component an ARN names: AWS-provided ones live under the account ``aws``."""
        name, _ = self._parse_arn(arn)
        public = arn.split(":")[4] == "aws"
        return (self.public if public else self.components).get(name) or {}

    def _record(self, arn: str) -> dict[str, Any]:
        name, version = self._parse_arn(arn)
        versions = self._versions(arn)
        if not versions:
            raise _not_found(f"component {name}")
        if version is None:
            version = _newest(list(versions))
        if version not in versions:
            raise _not_found(f"component {name} version {version}")
        return versions[version]

    def create_component_version(self, request: AwsRequest) -> Response:
        body = request.json()
        if not body.get("inlineRecipe"):
            raise _Error("ValidationException", "only inlineRecipe is supported locally (no Lambda components)")
        try:
            text = base64.b64decode(body["inlineRecipe"])
            recipe = yaml.safe_load(text)
        except Exception as exc:
            raise _Error("ValidationException", f"the recipe is not valid JSON or YAML: {exc}") from exc
        if not isinstance(recipe, dict):
            raise _Error("ValidationException", "the recipe must be a mapping")
        name, version = recipe.get("ComponentName"), str(recipe.get("ComponentVersion") or "")
        if not name or not _NAME.match(name) or name.lower().startswith("aws."):
            raise _Error("ValidationException", f"invalid ComponentName {name!r}")
        if not _VERSION.match(version):
            raise _Error("ValidationException", f"ComponentVersion {version!r} is not MAJOR.MINOR.PATCH")
        if version in self.components.get(name, {}):
            raise _Error("ConflictException", f"component {name} version {version} already exists", 409)
        state, message, errors = "DEPLOYABLE", "", {}
        for manifest in recipe.get("Manifests") or []:
            for art in manifest.get("Artifacts") or []:
                problem = self._check_artifact(art)
                if problem:
                    state = "FAILED"
                    errors[art.get("Uri") or art.get("URI") or "?"] = problem
        if errors:
            message = "; ".join(f"{uri}: {why}" for uri, why in errors.items())
        now = time.time()
        arn = self._component_arn(name, version)
        rec = {
            "arn": arn,
            "componentName": name,
            "componentVersion": version,
            "creationTimestamp": now,
            "publisher": recipe.get("ComponentPublisher", ""),
            "description": recipe.get("ComponentDescription", ""),
            "recipe": recipe,
            "status": {"componentState": state, "message": message or "", "errors": errors},
            "tags": body.get("tags") or {},
        }
        self.components.setdefault(name, {})[version] = rec
        log.info("component %s %s: %s %s", name, version, state, message)
        return Response(
            201,
            {
                "arn": arn,
                "componentName": name,
                "componentVersion": version,
                "creationTimestamp": now,
                "status": rec["status"],
            },
        )

    def _check_artifact(self, art: dict[str, Any]) -> str:
        """Fetch the artifact and set its digest as the service does; a reason when that is impossible."""
        uri = art.get("Uri") or art.get("URI") or ""
        if not uri.startswith("s3://"):
            return "only s3:// artifacts are supported locally"
        bucket, _, key = uri[5:].partition("/")
        try:
            data = self.runtime.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            return f"cannot read the artifact: {exc}"
        from loupe.greengrass import greengrass_digest

        digest = greengrass_digest(data)
        algorithm = art.get("Algorithm") or "SHA-256"
        if algorithm != "SHA-256":
            return f"unsupported digest algorithm {algorithm}"
        if art.get("Digest") and art["Digest"] != digest:
            return f"recipe digest {art['Digest']} does not match the artifact ({digest})"
        art["Digest"], art["Algorithm"] = digest, "SHA-256"
        return ""

    def list_components(self, request: AwsRequest) -> Response:
        out = []
        scope = (request.query.get("scope") or ["PRIVATE"])[0].upper()  # the API's default scope is PRIVATE
        listed = {"PRIVATE": self.components, "PUBLIC": self.public}.get(scope)
        if listed is None:
            raise _Error("ValidationException", f"scope {scope!r} is not PRIVATE or PUBLIC")
        for name, versions in sorted(listed.items()):
            latest = versions[_newest(list(versions))]
            out.append(
                {
                    "arn": latest["arn"].rsplit(":versions:", 1)[0],
                    "componentName": name,
                    "latestVersion": {
                        "arn": latest["arn"],
                        "componentVersion": latest["componentVersion"],
                        "creationTimestamp": latest["creationTimestamp"],
                        "description": latest["description"],
                        "publisher": latest["publisher"],
                        "platforms": _platforms(latest["recipe"]),
                    },
                }
            )
        return Response(200, {"components": out})

    def list_component_versions(self, request: AwsRequest, arn: str) -> Response:
        name, _ = self._parse_arn(arn)
        versions = self._versions(arn)
        if not versions:
            raise _not_found(f"component {name}")
        return Response(
            200,
            {
                "componentVersions": [
                    {"componentName": name, "componentVersion": v, "arn": versions[v]["arn"]}
                    for v in _sorted_versions(list(versions))
                ]
            },
        )

    def describe_component(self, request: AwsRequest, arn: str) -> Response:
        rec = self._record(arn)
        return Response(
            200,
            {
                "arn": rec["arn"],
                "componentName": rec["componentName"],
                "componentVersion": rec["componentVersion"],
                "creationTimestamp": rec["creationTimestamp"],
                "publisher": rec["publisher"],
                "description": rec["description"],
                "status": rec["status"],
                "platforms": _platforms(rec["recipe"]),
                "tags": rec["tags"],
            },
        )

    def get_component(self, request: AwsRequest, arn: str) -> Response:
        rec = self._record(arn)
        fmt = (request.query.get("recipeOutputFormat") or ["JSON"])[0].upper()
        text = yaml.safe_dump(rec["recipe"], sort_keys=False) if fmt == "YAML" else json.dumps(rec["recipe"])
        return Response(
            200, {"recipeOutputFormat": fmt, "recipe": base64.b64encode(text.encode()).decode(), "tags": rec["tags"]}
        )

    # ------------------------------------------------------------------ deployments
    def create_deployment(self, request: AwsRequest) -> Response:
        body = request.json()
        target = body.get("targetArn", "")
        token = body.get("clientToken")
        if token and token in self.tokens:
            dep = self.deployments[self.tokens[token]]
            return Response(
                201, {"deploymentId": dep["deploymentId"], "iotJobId": dep["iotJobId"], "iotJobArn": dep["iotJobArn"]}
            )
        things = self._target_things(target)
        components = body.get("components") or {}
        if not components:
            raise _Error("ValidationException", "a deployment needs at least one component")
        for name, spec in components.items():
            version = spec.get("componentVersion", "")
            rec = (self.components.get(name) or self.public.get(name) or {}).get(version)
            if rec is None:
                raise _Error("ValidationException", f"component {name} version {version} does not exist")
            if rec["status"]["componentState"] != "DEPLOYABLE":
                raise _Error("ValidationException", f"component {name} {version} is {rec['status']['componentState']}")
        now = time.time()
        dep_id = str(uuid.uuid4())
        job_id = str(uuid.uuid4())
        for other in self.deployments.values():
            if other["targetArn"] == target and other["isLatestForTarget"]:
                other["isLatestForTarget"] = False
                if other["deploymentStatus"] == "ACTIVE":
                    other["deploymentStatus"] = "INACTIVE"
                for ex in other["executions"].values():
                    if ex["status"] in ("QUEUED", "IN_PROGRESS"):
                        _set(ex, "CANCELED", f"superseded by deployment {dep_id}")
        revision = 1 + sum(1 for d in self.deployments.values() if d["targetArn"] == target)
        dep = {
            "targetArn": target,
            "revisionId": str(revision),
            "deploymentId": dep_id,
            "deploymentName": body.get("deploymentName") or f"Deployment for {target.rsplit('/', 1)[-1]}",
            "deploymentStatus": "ACTIVE",
            "iotJobId": job_id,
            "iotJobArn": f"arn:aws:iot:{self.region}:{self.account}:job/{job_id}",
            "components": components,
            "deploymentPolicies": body.get("deploymentPolicies") or {"failureHandlingPolicy": "ROLLBACK"},
            "iotJobConfiguration": body.get("iotJobConfiguration") or {},
            "creationTimestamp": now,
            "isLatestForTarget": True,
            "tags": body.get("tags") or {},
            "executions": {},
            "released": 0,
            "rate_steps": 0,
        }
        rollout = (dep["iotJobConfiguration"].get("jobExecutionsRolloutConfig") or {}).get("exponentialRate") or {}
        dep["rate"] = dep["released"] = int(rollout.get("baseRatePerMinute") or 1_000_000)
        for thing in things:
            dep["executions"][thing] = _execution(thing, now)
        self.deployments[dep_id] = dep
        if token:
            self.tokens[token] = dep_id
        log.info("deployment %s to %s (%d devices)", dep_id, target, len(things))
        return Response(201, {"deploymentId": dep_id, "iotJobId": job_id, "iotJobArn": dep["iotJobArn"]})

    def _target_things(self, target: str) -> list[str]:
        if ":thinggroup/" in target:
            group = target.rsplit("/", 1)[-1]
            iot = self.runtime.client("iot")
            try:
                iot.describe_thing_group(thingGroupName=group)
            except Exception as exc:
                raise _Error("ResourceNotFoundException", f"thing group {group} does not exist", 404) from exc
            things, token = [], None
            while True:
                page = iot.list_things_in_thing_group(thingGroupName=group, **({"nextToken": token} if token else {}))
                things.extend(page.get("things", []))
                token = page.get("nextToken")
                if not token:
                    return sorted(set(things))
        if ":thing/" in target:
            return [target.rsplit("/", 1)[-1]]
        raise _Error("ValidationException", f"targetArn {target!r} is neither a thing nor a thing group ARN")

    def _public(self, dep: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in dep.items() if k not in ("executions", "released", "rate", "rate_steps")}

    def get_deployment(self, request: AwsRequest, id: str) -> Response:
        dep = self.deployments.get(id)
        if dep is None:
            raise _not_found(f"deployment {id}")
        self._refresh(dep)
        return Response(200, self._public(dep))

    def list_deployments(self, request: AwsRequest) -> Response:
        target = (request.query.get("targetArn") or [None])[0]
        latest_only = (request.query.get("historyFilter") or ["LATEST_ONLY"])[0] == "LATEST_ONLY"
        out = []
        for dep in sorted(self.deployments.values(), key=lambda d: d["creationTimestamp"], reverse=True):
            if target and dep["targetArn"] != target:
                continue
            if latest_only and not dep["isLatestForTarget"]:
                continue
            out.append(
                {
                    k: dep[k]
                    for k in (
                        "targetArn",
                        "revisionId",
                        "deploymentId",
                        "deploymentName",
                        "creationTimestamp",
                        "deploymentStatus",
                        "isLatestForTarget",
                    )
                }
            )
        return Response(200, {"deployments": out})

    def cancel_deployment(self, request: AwsRequest, id: str) -> Response:
        dep = self.deployments.get(id)
        if dep is None:
            raise _not_found(f"deployment {id}")
        dep["deploymentStatus"] = "CANCELED"
        for ex in dep["executions"].values():
            if ex["status"] in ("QUEUED", "IN_PROGRESS"):
                _set(ex, "CANCELED", "deployment canceled")
        return Response(200, {"message": f"deployment {id} canceled"})

    def _refresh(self, dep: dict[str, Any]) -> None:
        """Time-based transitions: executions IN_PROGRESS past the job's timeout become TIMED_OUT."""
        minutes = ((dep["iotJobConfiguration"].get("timeoutConfig") or {}).get("inProgressTimeoutInMinutes")) or 0
        if not minutes:
            return
        now = time.time()
        for ex in dep["executions"].values():
            if ex["status"] == "IN_PROGRESS" and now - ex["started"] > float(minutes) * 60:
                _set(ex, "TIMED_OUT", f"not finished within {minutes} min")

    def _rollout(self, dep: dict[str, Any]) -> None:
        """Grow the released batch (exponential rate) and apply the abort criteria."""
        cfg = dep["iotJobConfiguration"]
        rate = (cfg.get("jobExecutionsRolloutConfig") or {}).get("exponentialRate") or {}
        execs = list(dep["executions"].values())
        succeeded = sum(1 for e in execs if e["status"] == "SUCCEEDED")
        if rate:
            criteria = rate.get("rateIncreaseCriteria") or {}
            step = int(criteria.get("numberOfSucceededThings") or criteria.get("numberOfNotifiedThings") or 1)
            notified = sum(1 for e in execs if e["status"] != "QUEUED")
            count = succeeded if "numberOfSucceededThings" in criteria else notified
            while count >= step * (dep["rate_steps"] + 1):
                dep["rate_steps"] += 1
                dep["rate"] = math.ceil(dep["rate"] * float(rate.get("incrementFactor") or 2))
                dep["released"] += dep["rate"]  # the next, larger batch
        for crit in (cfg.get("abortConfig") or {}).get("criteriaList") or []:
            finished = [e for e in execs if e["status"] in TERMINAL]
            ftype = crit.get("failureType", "ALL")
            bad = [e for e in finished if (ftype == "ALL" and e["status"] in FAILED_STATES) or e["status"] == ftype]
            enough = finished and len(finished) >= int(crit.get("minNumberOfExecutedThings") or 1)
            if enough and 100.0 * len(bad) / len(finished) >= float(crit.get("thresholdPercentage") or 100):
                for e in execs:
                    if e["status"] == "QUEUED":
                        _set(e, "CANCELED", f"rollout aborted: {len(bad)} of {len(finished)} devices failed")

    # ------------------------------------------------------------------ the IoT job behind each deployment
    # Greengrass runs every deployment as an IoT job (its iotJobId): one job execution per core device. The IoT
    # API answers DescribeJob and ListJobExecutionsForJob for it (IoT API reference; maxResults 1..250, nextToken).
    def _thing_arn(self, thing: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:thing/{thing}"

    def list_job_executions(self, request: AwsRequest, dep: dict[str, Any]) -> Response:
        self._refresh(dep)
        status = (request.query.get("status") or [None])[0]
        try:
            size = int((request.query.get("maxResults") or ["250"])[0])
            start = int((request.query.get("nextToken") or ["0"])[0])
        except ValueError as exc:
            raise _Error("InvalidRequestException", f"invalid maxResults or nextToken: {exc}") from exc
        if not 1 <= size <= 250:
            raise _Error("InvalidRequestException", "maxResults must be between 1 and 250")
        rows = [e for _, e in sorted(dep["executions"].items()) if not status or _job_status(e) == status]
        page = rows[start : start + size]
        out: dict[str, Any] = {
            "executionSummaries": [
                {
                    "thingArn": self._thing_arn(e["thing"]),
                    "jobExecutionSummary": {
                        "status": _job_status(e),
                        "queuedAt": e["created"],
                        **({"startedAt": e["started"]} if e["started"] else {}),
                        "lastUpdatedAt": e["modified"],
                        "executionNumber": 1,
                        "retryAttempt": 0,
                    },
                }
                for e in page
            ]
        }
        if start + size < len(rows):
            out["nextToken"] = str(start + size)
        return Response(200, out)

    def describe_job(self, dep: dict[str, Any]) -> Response:
        self._refresh(dep)
        counts: dict[str, int] = {}
        for e in dep["executions"].values():
            counts[_job_status(e)] = counts.get(_job_status(e), 0) + 1
        names = {
            "SUCCEEDED": "numberOfSucceededThings",
            "FAILED": "numberOfFailedThings",
            "REJECTED": "numberOfRejectedThings",
            "CANCELED": "numberOfCanceledThings",
            "QUEUED": "numberOfQueuedThings",
            "IN_PROGRESS": "numberOfInProgressThings",
            "TIMED_OUT": "numberOfTimedOutThings",
            "REMOVED": "numberOfRemovedThings",
        }
        return Response(
            200,
            {
                "job": {
                    "jobArn": dep["iotJobArn"],
                    "jobId": dep["iotJobId"],
                    "targetSelection": "CONTINUOUS" if ":thinggroup/" in dep["targetArn"] else "SNAPSHOT",
                    "status": {"ACTIVE": "IN_PROGRESS", "CANCELED": "CANCELED"}.get(
                        dep["deploymentStatus"], "COMPLETED"
                    ),
                    "targets": [dep["targetArn"]],
                    "createdAt": dep["creationTimestamp"],
                    "lastUpdatedAt": max([e["modified"] for e in dep["executions"].values()] or [0.0]),
                    "jobProcessDetails": {v: counts.get(k, 0) for k, v in names.items()},
                }
            },
        )

    # ------------------------------------------------------------------ core devices
    def _device(self, thing: str) -> dict[str, Any]:
        dev = self.devices.get(thing)
        if dev is None:
            raise _not_found(f"core device {thing}")
        return dev

    def list_core_devices(self, request: AwsRequest) -> Response:
        group_arn = (request.query.get("thingGroupArn") or [None])[0]
        status = (request.query.get("status") or [None])[0]
        names = list(self.devices)
        if group_arn:
            members = set(self._target_things(group_arn))
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
        for dep in sorted(self.deployments.values(), key=lambda d: d["creationTimestamp"], reverse=True):
            ex = dep["executions"].get(thing)
            if ex is None:
                continue
            self._refresh(dep)
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
            raise _not_found(f"core device {thing}")
        return Response(200, {"effectiveDeployments": out})

    # ------------------------------------------------------------------ local device protocol
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
            }
        )
        groups = set(body.get("groups") or [])
        if not groups:
            try:
                groups = {
                    g["groupName"]
                    for g in self.runtime.client("iot").list_thing_groups_for_thing(thingName=thing)["thingGroups"]
                }
            except Exception:  # noqa: BLE001 - an unknown thing simply has no group deployments
                groups = set()
        candidates = []
        for dep in self.deployments.values():
            if not dep["isLatestForTarget"] or dep["deploymentStatus"] != "ACTIVE":
                continue
            target = dep["targetArn"]
            if (":thinggroup/" in target and target.rsplit("/", 1)[-1] in groups) or target.endswith(f":thing/{thing}"):
                candidates.append(dep)
        if not candidates:
            return Response(200, {"deployment": None})
        dep = max(candidates, key=lambda d: d["creationTimestamp"])
        ex = dep["executions"].get(thing)
        if ex is None:  # joined the group after the deployment was created: it gets it too
            ex = dep["executions"][thing] = _execution(thing, now)
        self._rollout(dep)
        order = sorted(dep["executions"].values(), key=lambda e: (e["created"], e["thing"]))
        released = {e["thing"] for e in order[: dep["released"]]} | {
            e["thing"] for e in order if e["status"] != "QUEUED"
        }
        if ex["status"] == "CANCELED" or thing not in released:
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
        if dep is None:
            raise _not_found(f"deployment {id}")
        ex = dep["executions"].setdefault(thing, _execution(thing, time.time()))
        body = request.json()
        status = body.get("status", "")
        if status not in ("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"):
            raise _Error("ValidationException", f"status {status!r} is not IN_PROGRESS, SUCCEEDED, FAILED or REJECTED")
        if ex["status"] in TERMINAL:
            return Response(200, {"accepted": False, "status": ex["status"]})
        _set(ex, status, body.get("reason", ""), body.get("statusDetails"))
        if status == "IN_PROGRESS":
            ex["started"] = time.time()
        self._rollout(dep)
        log.info("device %s: deployment %s %s %s", thing, id, status, body.get("reason", ""))
        return Response(200, {"accepted": True, "status": ex["status"]})

    # ------------------------------------------------------------------ observability
    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "components": {n: _sorted_versions(list(v)) for n, v in self.components.items()},
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
                    for d in sorted(self.deployments.values(), key=lambda d: d["creationTimestamp"])[-5:]
                ],
                "core_devices": {n: {"status": d["status"], "last": d["last"]} for n, d in self.devices.items()},
            }


def _job_status(ex: dict[str, Any]) -> str:
    """The IoT job execution status of a core device's deployment execution (same names)."""
    return "SUCCEEDED" if ex["status"] == "COMPLETED" else ex["status"]


def _execution(thing: str, now: float) -> dict[str, Any]:
    return {
        "thing": thing,
        "status": "QUEUED",
        "reason": "",
        "created": now,
        "modified": now,
        "started": 0.0,
        "details": {},
    }


def _set(ex: dict[str, Any], status: str, reason: str, details: dict[str, Any] | None = None) -> None:
    ex["status"] = status
    ex["reason"] = reason or ""
    ex["modified"] = time.time()
    if details:
        ex["details"] = {
            "errorStack": [str(x) for x in details.get("errorStack") or []],
            "errorTypes": [str(x) for x in details.get("errorTypes") or []],
        }


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _sorted_versions(versions: list[str]) -> list[str]:
    return sorted(versions, key=_key, reverse=True)


def _newest(versions: list[str]) -> str:
    return _sorted_versions(versions)[0]


def _platforms(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in recipe.get("Manifests") or []:
        plat = m.get("Platform") or {}
        out.append({"name": plat.get("os", "all"), "attributes": {k: str(v) for k, v in plat.items()}})
    return out


# AWS-provided components the local fleet knows (the versions and nucleus requirements named in the Greengrass
# developer guide: "Greengrass nucleus", "Disk spooler" > Dependencies). No artifacts: a local core device
# provides them itself (see DEVICES.md).
NUCLEUS_VERSIONS = ("2.10.3", "2.12.6", "2.13.0", "2.14.0")
DISK_SPOOLER_VERSIONS = {"1.0.5": ">=2.11.0 <2.15.0", "1.0.6": ">=2.11.0 <2.16.0"}
_SPOOLER_DEFAULTS = {"storageType": "Memory", "maxSizeInBytes": 2621440, "keepQos0WhenOffline": False}


def _public_catalogue(region: str) -> dict[str, dict[str, dict[str, Any]]]:
    def record(recipe: dict[str, Any]) -> dict[str, Any]:
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        return {
            "arn": f"arn:aws:greengrass:{region}:aws:components:{name}:versions:{version}",
            "componentName": name,
            "componentVersion": version,
            "creationTimestamp": 1_700_000_000.0,
            "publisher": "AWS",
            "description": recipe["ComponentDescription"],
            "recipe": recipe,
            "status": {"componentState": "DEPLOYABLE", "message": "", "errors": {}},
            "tags": {},
        }

    out: dict[str, dict[str, dict[str, Any]]] = {"aws.greengrass.Nucleus": {}, "aws.greengrass.DiskSpooler": {}}
    for v in NUCLEUS_VERSIONS:
        out["aws.greengrass.Nucleus"][v] = record(
            {
                "RecipeFormatVersion": "2020-01-25",
                "ComponentName": "aws.greengrass.Nucleus",
                "ComponentVersion": v,
                "ComponentType": "aws.greengrass.nucleus",
                "ComponentDescription": "Core functionality for device side orchestration of deployments and "
                "lifecycle management for execution of Greengrass components and applications.",
                "ComponentPublisher": "AWS",
                "ComponentConfiguration": {"DefaultConfiguration": {"mqtt": {"spooler": dict(_SPOOLER_DEFAULTS)}}},
                "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {}, "Artifacts": []}],
            }
        )
    for v, requirement in DISK_SPOOLER_VERSIONS.items():
        out["aws.greengrass.DiskSpooler"][v] = record(
            {
                "RecipeFormatVersion": "2020-01-25",
                "ComponentName": "aws.greengrass.DiskSpooler",
                "ComponentVersion": v,
                "ComponentType": "aws.greengrass.plugin",
                "ComponentDescription": "Persistent storage for messages spooled from the core device to AWS IoT Core.",
                "ComponentPublisher": "AWS",
                "ComponentDependencies": {
                    "aws.greengrass.Nucleus": {"VersionRequirement": requirement, "DependencyType": "HARD"}
                },
                "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {}, "Artifacts": []}],
            }
        )
    return out
