"""SageMaker Ground Truth stand-in: labeling jobs answered by a local workforce.

``CreateLabelingJob`` / ``DescribeLabelingJob`` / ``ListLabelingJobs`` / ``StopLabelingJob`` (JSON protocol,
``SageMaker.<Op>``). A job reads its input manifest from the local S3, and a worker thread has each object answered
by the workforce ``<state_dir>/workforce/config.json`` names: the automatic one, from the labels sources
(:mod:`loupe_local.standins.groundtruth.workforce`), or a person in the local console (``"mode": "manual"``,
:mod:`loupe_local.standins.groundtruth.task_queue`). Either loads the images as the worker's browser does, through the
input buckets' CORS rules (:mod:`loupe_local.standins.groundtruth.browser`).

Ground Truth is closed to new customers: ``CreateLabelingJob`` is refused with ``AccessDeniedException`` (see
:data:`NOT_A_CUSTOMER`) unless the local account acts as an existing customer (``LocalRuntime(groundtruth_customer=
True)``, ``loupe local up --groundtruth-customer``).

An object nobody has an answer for fails as it would in Ground Truth when no worker takes the task: its output
line carries a ``failure-reason`` and no label (the labeling run puts such images back to ``unlabeled``). A job
where every object failed ends ``Failed``.

The output manifest is written with the same converters the cloud path reads (``loupe.manifests``), to
``<S3OutputPath>/<job>/manifests/output/output.manifest``, and each state change is announced as the
``SageMaker Ground Truth Labeling Job State Change`` event.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.session

from loupe import manifests
from loupe_local.standins.base import AwsRequest, Response, StandIn, error, role_client
from loupe_local.standins.groundtruth.browser import LOCAL_WORKTEAM, Browser, worker_origin
from loupe_local.standins.groundtruth.task_queue import TaskQueue
from loupe_local.standins.groundtruth.workforce import NO_WORKER, Line, Workforce

log = logging.getLogger("loupe_local.groundtruth")

OPERATIONS = {
    "CreateLabelingJob",
    "DescribeLabelingJob",
    "ListLabelingJobs",
    "StopLabelingJob",
    "DescribeWorkteam",
    "ListWorkteams",
}
EVENT = "SageMaker Ground Truth Labeling Job State Change"
ACCOUNT = "123456789012"


# Ground Truth "is no longer open to new customers. Existing customers can continue to use the service as normal"
# (Developer Guide, sms-create-labeling-job-api.html). AWS documents no error for an account that is not an
# existing customer: CreateLabelingJob's API reference lists only ResourceInUse and ResourceLimitExceeded
# (sagemaker/latest/APIReference/API_CreateLabelingJob.html). The closest documented behaviour is SageMaker's common
# error for a call the account may not make, AccessDeniedException, HTTP 400, "You do not have sufficient access to
# perform this action." (sagemaker/latest/APIReference/CommonErrors.html); the message adds the closure.
NOT_A_CUSTOMER = (
    "You do not have sufficient access to perform this action. Amazon SageMaker Ground Truth is no longer open to "
    "new customers; this account is not an existing Ground Truth customer."
)


def not_a_customer() -> Response:
    return error("AccessDeniedException", NOT_A_CUSTOMER, 400)


def local_workteam_arn(region: str) -> str:
    """The private workteam the local AWS's workforce stands for (what the local stack deploys with)."""
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:workteam/private-crowd/{LOCAL_WORKTEAM}"


@functools.cache
def _member_pattern(shape: str, member: str) -> str:
    """A member's regular expression from botocore's SageMaker model, the same one the service validates."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    return str(model.shape_for(shape).members[member].metadata["pattern"])


class GroundTruth(StandIn):
    name = "groundtruth"

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.queue = TaskQueue()  # manual mode: the tasks people answer in the console

    def attach(self, runtime: Any) -> None:
        super().attach(runtime)
        self.workforce_dir = Path(runtime.state_dir) / "workforce"

    def handles(self, request: AwsRequest) -> bool:
        return request.service == "sagemaker" and request.target in OPERATIONS

    def handle(self, request: AwsRequest) -> Response:
        body = request.json()
        if request.target == "CreateLabelingJob":
            return self._create(body)
        if request.target == "DescribeLabelingJob":
            job = self.jobs.get(body.get("LabelingJobName", ""))
            if job is None:
                return error("ResourceNotFound", f"Could not find labeling job {body.get('LabelingJobName')}")
            return Response(body=self._describe(job))
        if request.target == "ListLabelingJobs":
            return Response(body=self._list(body))
        if request.target == "StopLabelingJob":
            return self._stop_job(body.get("LabelingJobName", ""))
        if request.target in ("DescribeWorkteam", "ListWorkteams"):
            return self._workteams(request.target, body)
        return error("NotImplemented", f"{request.target}", 501)

    # ------------------------------------------------------------------ API
    def _workteams(self, operation: str, body: dict[str, Any]) -> Response:
        """The account's one private workteam, the one the local workforce stands for (the local stack's
        WorkteamArn). A name it does not know is not found, as DescribeWorkteam says of another account's team."""
        team = {
            "WorkteamName": LOCAL_WORKTEAM,
            "WorkteamArn": local_workteam_arn(self.runtime.region),
            "MemberDefinitions": [
                {"CognitoMemberDefinition": {"UserPool": "local", "UserGroup": "local", "ClientId": "local"}}
            ],
            "Description": "The local AWS's private workforce (loupe_local.standins.groundtruth.workforce).",
            "SubDomain": worker_origin(local_workteam_arn(self.runtime.region), self.runtime.region).split("//", 1)[1],
            "CreateDate": 0,
            "LastUpdatedDate": 0,
        }
        if operation == "DescribeWorkteam":
            if body.get("WorkteamName") != LOCAL_WORKTEAM:
                return error("ResourceNotFound", f"Workteam {body.get('WorkteamName')} does not exist")
            return Response(body={"Workteam": team})
        contains = body.get("NameContains") or ""
        return Response(body={"Workteams": [team] if contains in LOCAL_WORKTEAM else []})

    def _create(self, body: dict[str, Any]) -> Response:
        if not getattr(self.runtime, "groundtruth_customer", False):
            return not_a_customer()
        missing = [
            path
            for path, value in {
                "LabelingJobName": body.get("LabelingJobName"),
                "LabelAttributeName": body.get("LabelAttributeName"),
                "InputConfig.DataSource.S3DataSource.ManifestS3Uri": (
                    ((body.get("InputConfig") or {}).get("DataSource") or {}).get("S3DataSource") or {}
                ).get("ManifestS3Uri"),
                "OutputConfig.S3OutputPath": (body.get("OutputConfig") or {}).get("S3OutputPath"),
                "RoleArn": body.get("RoleArn"),
                "HumanTaskConfig.UiConfig": (body.get("HumanTaskConfig") or {}).get("UiConfig"),
                "HumanTaskConfig.WorkteamArn": (body.get("HumanTaskConfig") or {}).get("WorkteamArn"),
            }.items()
            if not value
        ]
        if missing:
            return error("ValidationException", f"missing required parameter(s): {', '.join(missing)}")
        workteam = str(body["HumanTaskConfig"]["WorkteamArn"])
        pattern = _member_pattern("HumanTaskConfig", "WorkteamArn")
        if not re.fullmatch(pattern, workteam):
            # the wording of AWS's JSON-protocol constraint errors
            return error(
                "ValidationException",
                f"1 validation error detected: Value '{workteam}' at 'humanTaskConfig.workteamArn' failed to "
                f"satisfy constraint: Member must satisfy regular expression pattern: {pattern}",
            )
        name = body["LabelingJobName"]
        attribute = body["LabelAttributeName"]
        if attribute.endswith("-metadata") or attribute.endswith("-ref"):
            return error("ValidationException", f"LabelAttributeName {attribute} may not end in -metadata or -ref")
        with self._lock:
            if name in self.jobs:
                return error("ResourceInUse", f"Labeling job {name} already exists")
            now = datetime.now(UTC)
            arn = f"arn:aws:sagemaker:{self.runtime.region}:{ACCOUNT}:labeling-job/{name}"
            job = {
                **body,
                "LabelingJobArn": arn,
                "LabelingJobStatus": "InProgress",
                "CreationTime": now.timestamp(),
                "LastModifiedTime": now.timestamp(),
                "JobReferenceCode": hashlib.sha256(name.encode()).hexdigest()[:12],
                "LabelCounters": {
                    "TotalLabeled": 0,
                    "HumanLabeled": 0,
                    "MachineLabeled": 0,
                    "FailedNonRetryableError": 0,
                    "Unlabeled": 0,
                },
            }
            self.jobs[name] = job
        self._emit(job)
        thread = threading.Thread(target=self._work, args=(name,), name=f"gt-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return Response(body={"LabelingJobArn": arn})

    def _describe(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k != "_stop"}

    def _list(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("StatusEquals")
        contains = body.get("NameContains", "")
        summaries = []
        for job in sorted(self.jobs.values(), key=lambda j: j["CreationTime"], reverse=True):
            if wanted and job["LabelingJobStatus"] != wanted:
                continue
            if contains and contains not in job["LabelingJobName"]:
                continue
            summaries.append(
                {
                    k: job[k]
                    for k in (
                        "LabelingJobName",
                        "LabelingJobArn",
                        "CreationTime",
                        "LastModifiedTime",
                        "LabelingJobStatus",
                        "LabelCounters",
                    )
                }
                | {
                    "WorkteamArn": job["HumanTaskConfig"]["WorkteamArn"],
                    "PreHumanTaskLambdaArn": job["HumanTaskConfig"].get("PreHumanTaskLambdaArn", ""),
                    **({"LabelingJobOutput": job["LabelingJobOutput"]} if "LabelingJobOutput" in job else {}),
                }
            )
        limit = int(body.get("MaxResults") or 100)
        return {"LabelingJobSummaryList": summaries[:limit]}

    def _stop_job(self, name: str) -> Response:
        job = self.jobs.get(name)
        if job is None:
            return error("ResourceNotFound", f"Could not find labeling job {name}")
        with self._lock:
            if job["LabelingJobStatus"] == "InProgress":
                job["LabelingJobStatus"] = "Stopping"
                job["_stop"] = True
        return Response(body={})

    # ------------------------------------------------------------------ the workforce
    def _emit(self, job: dict[str, Any]) -> None:
        try:
            self.runtime.emit_event(
                "aws.sagemaker", EVENT, {"LabelingJobStatus": job["LabelingJobStatus"]}, [job["LabelingJobArn"]]
            )
        except Exception:
            log.exception("could not emit the state change of %s", job["LabelingJobName"])

    def _finish(self, job: dict[str, Any], status: str, **fields: Any) -> None:
        with self._lock:
            job.update(fields)
            job["LabelingJobStatus"] = status
            job["LastModifiedTime"] = time.time()
        self._emit(job)

    def _work(self, name: str) -> None:
        job = self.jobs[name]
        try:
            workforce = Workforce(self.workforce_dir)
            if self._stop.wait(workforce.delay):
                return
            self._label(job, workforce)
        except Exception as exc:
            log.exception("labeling job %s failed", name)
            self._finish(job, "Failed", FailureReason=f"ClientError: {exc}"[:1024])

    def _label(self, job: dict[str, Any], workforce: Workforce) -> None:
        # Ground Truth reads the manifest and objects and writes the output with the job's role (API_CreateLabelingJob,
        # RoleArn: the ARN SageMaker "assumes to perform tasks on your behalf during data labeling")
        s3 = role_client(self.runtime, job.get("RoleArn"), "s3")
        name = job["LabelingJobName"]
        attribute = job["LabelAttributeName"]
        source = job["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
        bucket, key = manifests.split_s3_uri(source)
        lines = manifests.read_lines(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        category_uri = job.get("LabelCategoryConfigS3Uri")
        categories: dict[str, Any] = {}
        if category_uri:
            cb, ck = manifests.split_s3_uri(category_uri)
            categories = json.loads(s3.get_object(Bucket=cb, Key=ck)["Body"].read())
        audit = categories.get("auditLabelAttributeName")
        rng = random.Random(f"{workforce.seed}:{name}")
        origin = worker_origin(job["HumanTaskConfig"]["WorkteamArn"], self.runtime.region)
        browser = Browser(s3, origin, cors_reader=self.runtime.client("s3"))
        out: list[Line] = []
        answered = None
        if workforce.mode == "manual":
            answered = self.queue.ask_people(job, browser, lines, categories, self._stopped(job))
        if self._stop.is_set():  # the local AWS is shutting down, not the job
            return
        for index, (_, obj) in enumerate(lines):
            if job.get("_stop") and answered is None:  # stopped: the objects not labeled yet fail
                reason = f"{NO_WORKER.split(' (')[0]} before the labeling job was stopped"
                out.append((manifests.failed_line(obj["source-ref"], attribute, reason, name, obj), False))
                continue
            if answered is not None:
                line, ok = answered[index]
            elif audit:
                line, ok = workforce.verify_one(browser, obj, attribute, audit, categories, name)
            else:
                line, ok = workforce.label_one(browser, obj, attribute, categories, rng, name)
            out.append((line, ok))
        self._write_output(s3, job, out)

    def _stopped(self, job: dict[str, Any]) -> Callable[[], bool]:
        """Whether the job was stopped, or the local AWS is stopping (what ends a manual job's wait)."""
        return lambda: bool(job.get("_stop")) or self._stop.is_set()

    def _write_output(self, s3: Any, job: dict[str, Any], out: list[Line]) -> None:
        """The output manifest, and the job's end state: Stopped when it was stopped (the output holds what was
        labeled before: StopLabelingJob, SageMaker API reference), else Completed, or Failed when no object was
        labeled."""
        name = job["LabelingJobName"]
        labeled = sum(ok for _, ok in out)
        failed = len(out) - labeled
        prefix = job["OutputConfig"]["S3OutputPath"].rstrip("/") + "/"
        ob, okey = manifests.split_s3_uri(prefix + f"{name}/manifests/output/output.manifest")
        s3.put_object(Bucket=ob, Key=okey, Body=("".join(json.dumps(line) + "\n" for line, _ in out)).encode())
        counters = {
            "TotalLabeled": labeled,
            "HumanLabeled": labeled,
            "MachineLabeled": 0,
            "FailedNonRetryableError": failed,
            "Unlabeled": 0,
        }
        output = {"OutputDatasetS3Uri": f"s3://{ob}/{okey}"}
        if job.get("_stop"):
            self._finish(job, "Stopped", LabelCounters=counters, LabelingJobOutput=output)
        elif labeled == 0:
            self._finish(
                job,
                "Failed",
                LabelCounters=counters,
                LabelingJobOutput=output,
                FailureReason="ClientError: no data object was labeled",
            )
        else:
            self._finish(job, "Completed", LabelCounters=counters, LabelingJobOutput=output)

    # ------------------------------------------------------------------ manual mode: the console's task queue
    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.queue.tasks

    def pending_tasks(self) -> list[dict[str, Any]]:
        return self.queue.pending_tasks()

    def task_image(self, task_id: str) -> tuple[bytes, str]:
        return self.queue.task_image(task_id)

    def submit(self, task_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        return self.queue.submit(task_id, answer)

    def status(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for job in self.jobs.values():
            by_status[job["LabelingJobStatus"]] = by_status.get(job["LabelingJobStatus"], 0) + 1
        return {"jobs": by_status}

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
