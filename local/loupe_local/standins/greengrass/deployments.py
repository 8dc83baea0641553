"""Greengrass v2 deployments to things and thing groups, and the IoT job behind each.

CreateDeployment (``clientToken`` idempotency; a new deployment to a target supersedes the previous one),
GetDeployment, ListDeployments, CancelDeployment; on the IoT API, DescribeJob and ListJobExecutionsForJob (paged)
for the IoT job behind each deployment (``iotJobId``), as Greengrass runs deployments as IoT jobs.

Rollout (``exponentialRate``): a target has no job execution until the rollout reaches it. The first
``baseRatePerMinute`` targets get theirs at once, then one batch at the current rate per wall-clock minute; each
time ``rateIncreaseCriteria`` devices succeed the rate grows by ``incrementFactor`` and the next batch is released
(capped by ``maximumPerMinute``). Until every target has its execution, DescribeJob's ``jobProcessDetails`` carries
``processingTargets`` (IoT API reference, *JobProcessDetails*: "null after the job execution has finished rolling
out to all the target devices"), and ListJobExecutionsForJob lists only the executions created so far. Abort
(``abortConfig``): when the failed share of finished devices reaches ``thresholdPercentage`` the job is canceled:
its QUEUED executions become CANCELED and the targets not reached get none. ``timeoutConfig.
inProgressTimeoutInMinutes`` turns a device stuck IN_PROGRESS into TIMED_OUT.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from loupe_local.standins.base import AwsRequest, Response, StandInHost
from loupe_local.standins.greengrass.components import ComponentStore, GreengrassError, not_found

log = logging.getLogger("loupe_local.greengrass")

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELED", "REJECTED", "COMPLETED"}
FAILED_STATES = {"FAILED", "TIMED_OUT", "REJECTED"}


class DeploymentStore:
    """Deployments by id, each with its per-device executions (the IoT job's executions)."""

    host: StandInHost  # set by attach: thing groups are read from its IoT

    def __init__(self, components: ComponentStore) -> None:
        self.components = components
        self.deployments: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}

    def attach(self, host: StandInHost) -> None:
        self.host = host

    @property
    def region(self) -> str:
        return self.components.region

    @property
    def account(self) -> str:
        return self.components.account

    def get(self, id: str) -> dict[str, Any]:
        dep = self.deployments.get(id)
        if dep is None:
            raise not_found(f"deployment {id}")
        return dep

    def create_deployment(self, request: AwsRequest) -> Response:
        body = request.json()
        target = body.get("targetArn", "")
        token = body.get("clientToken")
        if token and token in self.tokens:
            dep = self.deployments[self.tokens[token]]
            return Response(
                201, {"deploymentId": dep["deploymentId"], "iotJobId": dep["iotJobId"], "iotJobArn": dep["iotJobArn"]}
            )
        things = self.target_things(target)
        components = body.get("components") or {}
        if not components:
            raise GreengrassError("ValidationException", "a deployment needs at least one component")
        for name, spec in components.items():
            self.components.deployable(name, spec.get("componentVersion", ""))
        now = time.time()
        dep_id = str(uuid.uuid4())
        job_id = str(uuid.uuid4())
        for other in self.deployments.values():
            if other["targetArn"] == target and other["isLatestForTarget"]:
                other["isLatestForTarget"] = False
                if other["deploymentStatus"] == "ACTIVE":
                    other["deploymentStatus"] = "INACTIVE"
                other["waiting"] = []
                for ex in other["executions"].values():
                    if ex["status"] in ("QUEUED", "IN_PROGRESS"):
                        set_status(ex, "CANCELED", f"superseded by deployment {dep_id}")
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
            "executions": {},  # the job executions created so far (the targets the rollout reached)
            "waiting": list(things),  # targets the rollout has not reached yet, in rollout order
            "released": 0,
            "rate_steps": 0,
            "last_batch": now,
        }
        rollout = (dep["iotJobConfiguration"].get("jobExecutionsRolloutConfig") or {}).get("exponentialRate") or {}
        dep["rate"] = dep["released"] = int(rollout.get("baseRatePerMinute") or 1_000_000)
        self.reach(dep, now)
        self.deployments[dep_id] = dep
        if token:
            self.tokens[token] = dep_id
        log.info("deployment %s to %s (%d devices)", dep_id, target, len(things))
        return Response(201, {"deploymentId": dep_id, "iotJobId": job_id, "iotJobArn": dep["iotJobArn"]})

    def target_things(self, target: str) -> list[str]:
        if ":thinggroup/" in target:
            group = target.rsplit("/", 1)[-1]
            iot = self.host.client("iot")
            try:
                iot.describe_thing_group(thingGroupName=group)
            except Exception as exc:
                raise GreengrassError("ResourceNotFoundException", f"thing group {group} does not exist", 404) from exc
            things, token = [], None
            while True:
                page = iot.list_things_in_thing_group(thingGroupName=group, **({"nextToken": token} if token else {}))
                things.extend(page.get("things", []))
                token = page.get("nextToken")
                if not token:
                    return sorted(set(things))
        if ":thing/" in target:
            return [target.rsplit("/", 1)[-1]]
        raise GreengrassError("ValidationException", f"targetArn {target!r} is neither a thing nor a thing group ARN")

    def _public(self, dep: dict[str, Any]) -> dict[str, Any]:
        hidden = ("executions", "waiting", "released", "rate", "rate_steps", "last_batch", "aborted")
        return {k: v for k, v in dep.items() if k not in hidden}

    def get_deployment(self, request: AwsRequest, id: str) -> Response:
        dep = self.get(id)
        self.refresh(dep)
        return Response(200, self._public(dep))

    def list_deployments(self, request: AwsRequest) -> Response:
        target = next(iter(request.query.get("targetArn") or []), None)
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
        dep = self.get(id)
        dep["deploymentStatus"] = "CANCELED"
        dep["waiting"] = []
        for ex in dep["executions"].values():
            if ex["status"] in ("QUEUED", "IN_PROGRESS"):
                set_status(ex, "CANCELED", "deployment canceled")
        return Response(200, {"message": f"deployment {id} canceled"})

    def reach(self, dep: dict[str, Any], now: float) -> None:
        """Create the job executions of the next waiting targets, up to the number the rollout has released."""
        while dep["waiting"] and len(dep["executions"]) < dep["released"]:
            thing = dep["waiting"].pop(0)
            dep["executions"].setdefault(thing, new_execution(thing, now))

    def add_target(self, dep: dict[str, Any], thing: str) -> None:
        """A thing that joined the target group after the deployment was created: the rollout reaches it too."""
        rolling = dep["deploymentStatus"] == "ACTIVE" and dep["isLatestForTarget"] and not dep.get("aborted")
        if rolling and thing not in dep["executions"] and thing not in dep["waiting"]:
            dep["waiting"].append(thing)

    def refresh(self, dep: dict[str, Any]) -> None:
        """Time-based transitions: one more batch per rollout minute; executions IN_PROGRESS past the job's timeout
        become TIMED_OUT."""
        now = time.time()
        if dep["waiting"] and dep["deploymentStatus"] == "ACTIVE":
            minutes = int((now - dep["last_batch"]) // 60)
            if minutes > 0:
                dep["released"] += minutes * dep["rate"]
                dep["last_batch"] += minutes * 60
                self.reach(dep, now)
        minutes = ((dep["iotJobConfiguration"].get("timeoutConfig") or {}).get("inProgressTimeoutInMinutes")) or 0
        if not minutes:
            return
        for ex in dep["executions"].values():
            if ex["status"] == "IN_PROGRESS" and now - ex["started"] > float(minutes) * 60:
                set_status(ex, "TIMED_OUT", f"not finished within {minutes} min")

    def rollout(self, dep: dict[str, Any]) -> None:
        """Grow the released batch (exponential rate), reach the next targets and apply the abort criteria."""
        cfg = dep["iotJobConfiguration"]
        rollout_cfg = cfg.get("jobExecutionsRolloutConfig") or {}
        rate = rollout_cfg.get("exponentialRate") or {}
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
                if rollout_cfg.get("maximumPerMinute"):
                    dep["rate"] = min(dep["rate"], int(rollout_cfg["maximumPerMinute"]))
                dep["released"] += dep["rate"]  # the next, larger batch
        self.reach(dep, time.time())
        execs = list(dep["executions"].values())
        for crit in (cfg.get("abortConfig") or {}).get("criteriaList") or []:
            finished = [e for e in execs if e["status"] in TERMINAL]
            ftype = crit.get("failureType", "ALL")
            bad = [e for e in finished if (ftype == "ALL" and e["status"] in FAILED_STATES) or e["status"] == ftype]
            enough = finished and len(finished) >= int(crit.get("minNumberOfExecutedThings") or 1)
            if enough and 100.0 * len(bad) / len(finished) >= float(crit.get("thresholdPercentage") or 100):
                dep["waiting"], dep["aborted"] = [], True  # the job is canceled: targets not reached get no execution
                for e in execs:
                    if e["status"] == "QUEUED":
                        set_status(e, "CANCELED", f"rollout aborted: {len(bad)} of {len(finished)} devices failed")

    # ------------------------------------------------------------------ the IoT job behind each deployment
    # Greengrass runs every deployment as an IoT job (its iotJobId): one job execution per core device. The IoT
    # API answers DescribeJob and ListJobExecutionsForJob for it (IoT API reference; maxResults 1..250, nextToken).
    def job_of(self, request: AwsRequest) -> tuple[dict[str, Any], bool] | None:
        """(deployment, whether it asks for the executions) when the request is DescribeJob or
        ListJobExecutionsForJob on the IoT job of one of these deployments."""
        match = re.fullmatch(r"/jobs/([^/]+)(/things)?", unquote(request.path).rstrip("/"))
        if not match:
            return None
        dep = next((d for d in self.deployments.values() if d["iotJobId"] == match.group(1)), None)
        return (dep, bool(match.group(2))) if dep is not None else None

    def _thing_arn(self, thing: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:thing/{thing}"

    def list_job_executions(self, request: AwsRequest, dep: dict[str, Any]) -> Response:
        self.refresh(dep)
        status = next(iter(request.query.get("status") or []), None)
        try:
            size = int((request.query.get("maxResults") or ["250"])[0])
            start = int((request.query.get("nextToken") or ["0"])[0])
        except ValueError as exc:
            raise GreengrassError("InvalidRequestException", f"invalid maxResults or nextToken: {exc}") from exc
        if not 1 <= size <= 250:
            raise GreengrassError("InvalidRequestException", "maxResults must be between 1 and 250")
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
        self.refresh(dep)
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
                    "jobProcessDetails": {
                        **{v: counts.get(k, 0) for k, v in names.items()},
                        # present while the rollout has not reached every target (IoT API, JobProcessDetails)
                        **({"processingTargets": [dep["targetArn"]]} if dep["waiting"] else {}),
                    },
                }
            },
        )


def _job_status(ex: dict[str, Any]) -> str:
    """The IoT job execution status of a core device's deployment execution (same names)."""
    return "SUCCEEDED" if ex["status"] == "COMPLETED" else ex["status"]


def new_execution(thing: str, now: float) -> dict[str, Any]:
    return {
        "thing": thing,
        "status": "QUEUED",
        "reason": "",
        "created": now,
        "modified": now,
        "started": 0.0,
        "details": {},
    }


def set_status(ex: dict[str, Any], status: str, reason: str, details: dict[str, Any] | None = None) -> None:
    ex["status"] = status
    ex["reason"] = reason or ""
    ex["modified"] = time.time()
    if details:
        ex["details"] = {
            "errorStack": [str(x) for x in details.get("errorStack") or []],
            "errorTypes": [str(x) for x in details.get("errorTypes") or []],
        }
