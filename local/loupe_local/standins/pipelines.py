"""Runs SageMaker Pipeline executions locally: moto stores pipelines and executions but never runs them.

moto answers ``StartPipelineExecution`` (so its execution list stays right); this stand-in sees the answer
(``after``), reads the pipeline definition moto stores, and runs its steps in a worker thread:

- Processing steps whose container runs ``job.py`` and Training steps (``sagemaker_program``) run the same entry
  points from ``training/`` as subprocesses, with SageMaker's container contract: processing inputs/outputs under
  ``LOUPE_OPT_ML`` (= ``/opt/ml`` moved into the state dir), ``SM_CHANNEL_*``, ``SM_MODEL_DIR``, ``SM_HPS``,
  ``SM_OUTPUT_DATA_DIR``; inputs are downloaded from and outputs uploaded to the local S3 through boto3, the model
  dir is tarred to ``<S3OutputPath>/<job>/output/model.tar.gz`` like SageMaker does;
- a Training step's request is validated first the way CreateTrainingJob validates it (managed spot's
  StoppingCondition); a refused request fails the step with the pipeline's "Failed to invoke" reason;
- a Training step's ``CheckpointConfig`` gets SageMaker's checkpoint contract: the S3 prefix is copied into the
  local folder before the algorithm starts and what the algorithm writes there is uploaded while it runs; a test can
  reclaim the "spot instance" (:meth:`PipelineExecutions.interrupt_training`): the job's process is killed, its
  folder is replaced by what S3 holds, and the job restarts, as a managed spot job does after an interruption;
- ``RetryPolicies`` are honoured for failures that carry an exception type (only injected ones locally:
  :meth:`PipelineExecutions.inject_fault`), with their interval, backoff, MaxAttempts / ExpireAfterMin;
- Condition steps evaluate their conditions (``Std:JsonGet`` over property files, ``Get`` of parameters);
- RegisterModel steps call ``create_model_package`` on moto's model registry; Fail steps fail the execution with
  their message.

It answers ``DescribePipelineExecution``, ``ListPipelineExecutionSteps`` and ``StopPipelineExecution`` for the
executions it runs (and SageMaker's ``ResourceNotFound`` for an execution nobody started), and emits what AWS
would and moto does not: "SageMaker Model Building Pipeline Execution Status Change" (and the step variant for
failed steps) and "SageMaker Model Package State Change" when a package is registered (approval changes are the
model registry observer's, ``modelregistry.py``). Step logs go to ``<state_dir>/pipelines/<execution id>/<step>.log``;
training progress (epoch, losses, val mAP) is in ``progress.json`` there and in :meth:`status`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loupe_local.standins.base import AwsRequest, Response, StandIn, error

log = logging.getLogger("loupe_local.pipelines")

SOURCE = "aws.sagemaker"
EXECUTION_STATUS_CHANGE = "SageMaker Model Building Pipeline Execution Status Change"
STEP_STATUS_CHANGE = "SageMaker Model Building Pipeline Execution Step Status Change"
PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
ANSWERED = {"DescribePipelineExecution", "ListPipelineExecutionSteps", "StopPipelineExecution"}
OBSERVED = {"StartPipelineExecution", "CreateModelPackage"}
_GET_STEP = re.compile(r"^Steps\.([^.]+)\.(.+)$")
# PipelineExecutionArn's pattern in the API reference (API_DescribePipelineExecution, ..._ListPipelineExecutionSteps)
_EXECUTION_ARN_PATTERN = r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:pipeline\/.*\/execution\/.*"
_EXECUTION_ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:pipeline/(.*)/execution/.*")


class StepFailed(Exception):
    """A step ended in failure; the message is the step's (and the execution's) FailureReason.

    ``exception_type`` is the retry-policy type of the failure ("SageMaker.CAPACITY_ERROR", ...), None when no
    policy may retry it (errors of the algorithm, refused requests).
    """

    def __init__(self, message: str, exception_type: str | None = None) -> None:
        super().__init__(message)
        self.exception_type = exception_type


# https://docs.aws.amazon.com/sagemaker/latest/dg/pipelines-retry-policy.html
RETRYABLE_TYPES = {
    "Step.SERVICE_FAULT",
    "Step.THROTTLING",
    "SageMaker.JOB_INTERNAL_ERROR",
    "SageMaker.CAPACITY_ERROR",
    "SageMaker.RESOURCE_LIMIT",
}
SPOT_INTERRUPTED = -9  # returncode of a job process the local "spot reclaim" killed


def invoke_failure(operation: str, message: str) -> str:
    """The FailureReason SageMaker Pipelines gives a step whose job-creating call was refused."""
    return f"ClientError: Failed to invoke sagemaker:{operation}. Error Details: {message}"


def validate_training_request(args: dict[str, Any]) -> None:
    """CreateTrainingJob's checks of managed spot training (API_StoppingCondition, API_CreateTrainingJob).

    MaxWaitTimeInSeconds is "the amount of time spent waiting for Spot capacity plus the amount of time the job
    can run. It must be equal to or greater than MaxRuntimeInSeconds", and is refused without spot (message as
    SageMaker words it). The wording of the MaxWait < MaxRuntime refusal is not published; ours follows the same
    "Invalid MaxWaitTimeInSeconds." form.
    """
    stopping = args.get("StoppingCondition") or {}
    spot = args.get("EnableManagedSpotTraining") in (True, "true", "True")
    max_run = stopping.get("MaxRuntimeInSeconds")
    max_wait = stopping.get("MaxWaitTimeInSeconds")
    if max_wait is not None and not spot:
        raise StepFailed(
            invoke_failure(
                "CreateTrainingJob",
                "Invalid MaxWaitTimeInSeconds. It is only supported when EnableManagedSpotTraining is set to true",
            )
        )
    if spot and max_wait is not None and max_run is not None and int(max_wait) < int(max_run):
        raise StepFailed(
            invoke_failure(
                "CreateTrainingJob",
                f"Invalid MaxWaitTimeInSeconds. It must be equal to or greater than MaxRuntimeInSeconds "
                f"(MaxWaitTimeInSeconds={int(max_wait)}, MaxRuntimeInSeconds={int(max_run)})",
            )
        )


@dataclass
class StepRecord:
    name: str
    type: str
    status: str = "Starting"
    start: float = field(default_factory=time.time)
    end: float | None = None
    failure: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1

    def api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "StepName": self.name,
            "StepDisplayName": self.name,
            "StartTime": self.start,
            "StepStatus": self.status,
            "Metadata": self.metadata,
            "AttemptCount": self.attempts,
        }
        if self.end is not None:
            out["EndTime"] = self.end
        if self.failure:
            out["FailureReason"] = self.failure
        return out


@dataclass
class Execution:
    arn: str
    pipeline_name: str
    pipeline_arn: str
    display_name: str
    description: str
    parameters: dict[str, Any]
    definition: dict[str, Any]
    root: Path
    status: str = "Executing"
    failure: str = ""
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    steps: list[StepRecord] = field(default_factory=list)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)  # step name -> its properties
    property_files: dict[str, Path] = field(default_factory=dict)  # "Step.PropertyFileName" -> local file
    stop_requested: bool = False

    @property
    def execution_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    def api(self) -> dict[str, Any]:
        out = {
            "PipelineArn": self.pipeline_arn,
            "PipelineExecutionArn": self.arn,
            "PipelineExecutionDisplayName": self.display_name,
            "PipelineExecutionStatus": self.status,
            "PipelineExecutionDescription": self.description,
            "CreationTime": self.created,
            "LastModifiedTime": self.modified,
            "PipelineExperimentConfig": {"ExperimentName": self.pipeline_name, "TrialName": self.execution_id},
        }
        if self.failure:
            out["FailureReason"] = self.failure
        return out


class PipelineExecutions(StandIn):
    name = "sagemaker-pipelines"

    def __init__(self) -> None:
        self.executions: dict[str, Execution] = {}
        self._queue: queue.Queue[Execution | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._interrupt: Callable[[Path], bool] | None = None  # armed spot reclaim: fires when it returns True
        self._faults: dict[str, list[tuple[str, str]]] = {}  # step name -> failures its next attempts raise

    # ------------------------------------------------------------------ test seams (what AWS does to a job)
    def interrupt_training(self, when: Callable[[Path], bool] | None = None) -> None:
        """Reclaim the spot instance of the next (or running) training job once ``when(checkpoint folder)`` holds.

        The job's process is killed (a reclaim gives no chance to finish the epoch), its checkpoint folder is
        uploaded as SageMaker's continuous sync left it, the instance's disk is gone (the folder is emptied and
        refilled from the checkpoint S3 prefix) and the job starts again, like a managed spot job after an
        interruption. One reclaim per call.
        """
        self._interrupt = when or (lambda _folder: True)

    @property
    def interrupt_pending(self) -> bool:
        """An armed reclaim has not fired yet."""
        return self._interrupt is not None

    def cancel_interrupt(self) -> None:
        self._interrupt = None

    def inject_fault(self, step: str, exception_type: str, message: str, times: int = 1) -> None:
        """Make the next ``times`` attempts of ``step`` fail as SageMaker would with ``exception_type``."""
        self._faults.setdefault(step, []).extend([(exception_type, message)] * times)

    # ------------------------------------------------------------------ seam
    def attach(self, runtime: Any) -> None:
        super().attach(runtime)
        self.training_dir = Path(runtime.root) / "training"
        self.work_dir = Path(runtime.state_dir) / "pipelines"
        self._worker = threading.Thread(target=self._run_queue, name="pipeline-executions", daemon=True)
        self._worker.start()

    def handles(self, request: AwsRequest) -> bool:
        if request.service != "sagemaker" or request.target not in ANSWERED:
            return False
        arn = request.json().get("PipelineExecutionArn")
        # executions it runs, and those nobody knows (moto would answer a 500 or the wrong error for them); moto
        # keeps answering for executions it stored before this stand-in was attached
        return arn in self.executions or not self._stored_by_moto(arn)

    def _stored_by_moto(self, arn: Any) -> bool:
        match = _EXECUTION_ARN.fullmatch(arn) if isinstance(arn, str) else None
        if match is None:
            return False
        from botocore.exceptions import ClientError

        try:
            pages = self.runtime.client("sagemaker").get_paginator("list_pipeline_executions")
            summaries = (
                s for page in pages.paginate(PipelineName=match.group(1)) for s in page["PipelineExecutionSummaries"]
            )
            return any(s["PipelineExecutionArn"] == arn for s in summaries)
        except ClientError:  # no such pipeline
            return False

    def handle(self, request: AwsRequest) -> Response:
        arn = request.json().get("PipelineExecutionArn")
        execution = self.executions.get(arn) if isinstance(arn, str) else None
        if execution is None:
            if not isinstance(arn, str) or not _EXECUTION_ARN.fullmatch(arn):
                return error(
                    "ValidationException",
                    f"1 validation error detected: Value '{arn}' at 'pipelineExecutionArn' failed to satisfy "
                    f"constraint: Member must satisfy regular expression pattern: {_EXECUTION_ARN_PATTERN}",
                )
            # the Errors of API_DescribePipelineExecution, API_ListPipelineExecutionSteps and
            # API_StopPipelineExecution: ResourceNotFound ("Resource being access is not found."), HTTP 400
            return error("ResourceNotFound", f"Pipeline execution with ARN {arn} does not exist.")
        if request.target == "DescribePipelineExecution":
            return Response(body=execution.api())
        if request.target == "ListPipelineExecutionSteps":
            order = request.json().get("SortOrder", "Descending")
            steps = sorted(execution.steps, key=lambda s: s.start, reverse=order != "Ascending")
            return Response(body={"PipelineExecutionSteps": [s.api() for s in steps]})
        if request.target == "StopPipelineExecution":
            execution.stop_requested = True
            if execution.status == "Executing":
                execution.status = "Stopping"
                proc = self._proc
                if proc is not None and proc.poll() is None:
                    proc.terminate()
            return Response(body={"PipelineExecutionArn": execution.arn})
        return error("ValidationException", f"unsupported {request.target}")

    def after(self, request: AwsRequest, status: int, body: bytes) -> None:
        if request.service != "sagemaker" or request.target not in OBSERVED or status >= 300:
            return
        try:
            reply = json.loads(body or b"{}")
            if request.target == "StartPipelineExecution":
                self._start(request.json(), reply["PipelineExecutionArn"])
            elif request.target == "CreateModelPackage":
                self._package_event(reply["ModelPackageArn"])
        except Exception:  # an observer must never break the call it observed
            log.exception("pipelines stand-in: could not process %s", request.target)

    def status(self) -> dict[str, Any]:
        out = {}
        for arn, ex in self.executions.items():
            progress_file = ex.root / "progress.json"
            progress = None
            if progress_file.is_file():
                try:
                    data = json.loads(progress_file.read_text())
                    progress = {k: data.get(k) for k in ("status", "epoch", "epochs")}
                    if data.get("history"):
                        progress["last"] = data["history"][-1]
                except (OSError, ValueError):
                    progress = None
            running = next((s.name for s in ex.steps if s.status == "Executing"), None)
            out[arn] = {
                "status": ex.status,
                "step": running,
                "failure": ex.failure,
                "training": progress,
                "logs": str(ex.root),
            }
        return {"executions": out}

    def stop(self) -> None:
        for ex in self.executions.values():
            ex.stop_requested = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout=15)

    # ------------------------------------------------------------------ model package events
    def _package_event(self, arn: str) -> None:
        desc = self.runtime.client("sagemaker").describe_model_package(ModelPackageName=arn)
        desc.pop("ResponseMetadata", None)
        self.runtime.emit_event(SOURCE, PACKAGE_STATE_CHANGE, _jsonable(desc), [arn])

    # ------------------------------------------------------------------ executions
    def _start(self, req: dict[str, Any], arn: str) -> None:
        sm = self.runtime.client("sagemaker")
        name = req["PipelineName"]
        pipeline = sm.describe_pipeline(PipelineName=name)
        definition = json.loads(pipeline["PipelineDefinition"])
        params = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}
        types = {p["Name"]: p.get("Type", "String") for p in definition.get("Parameters", [])}
        for p in req.get("PipelineParameters", []) or []:
            if p["Name"] not in params:
                raise ValueError(f"unknown pipeline parameter {p['Name']}")
            params[p["Name"]] = _typed(p["Value"], types[p["Name"]])
        execution = Execution(
            arn=arn,
            pipeline_name=pipeline["PipelineName"],
            pipeline_arn=pipeline["PipelineArn"],
            display_name=req.get("PipelineExecutionDisplayName") or arn.rsplit("/", 1)[-1],
            description=req.get("PipelineExecutionDescription", ""),
            parameters=params,
            definition=definition,
            root=self.work_dir / arn.rsplit("/", 1)[-1],
        )
        execution.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.executions[arn] = execution
        self._status_event(execution, None)
        self._queue.put(execution)

    def _run_queue(self) -> None:
        while True:
            execution = self._queue.get()
            if execution is None:
                return
            try:
                self._run(execution)
            except Exception as exc:  # the execution fails, the local AWS keeps running
                log.exception("pipeline execution %s crashed", execution.arn)
                self._finish(execution, "Failed", f"local runner error: {exc}")

    def _run(self, ex: Execution) -> None:
        steps = _ordered(ex.definition["Steps"])
        for step in steps:
            if ex.stop_requested:
                self._finish(ex, "Stopped", "stopped on request")
                return
            try:
                self._run_step(ex, step)
            except StepFailed as exc:
                self._finish(ex, "Failed", str(exc))
                return
        self._finish(ex, "Succeeded", "")

    def _finish(self, ex: Execution, status: str, reason: str) -> None:
        previous = ex.status
        ex.status = status
        ex.failure = reason
        ex.modified = time.time()
        (ex.root / "execution.json").write_text(json.dumps(ex.api(), indent=1))
        self._status_event(ex, previous)

    def _status_event(self, ex: Execution, previous: str | None) -> None:
        detail = {
            "pipelineArn": ex.pipeline_arn,
            "pipelineExecutionArn": ex.arn,
            "pipelineExecutionDisplayName": ex.display_name,
            "pipelineExecutionDescription": ex.description,
            "currentPipelineExecutionStatus": ex.status,
            "previousPipelineExecutionStatus": previous,
            "executionStartTime": _iso(ex.created),
        }
        if ex.status in ("Succeeded", "Failed", "Stopped"):
            detail["executionEndTime"] = _iso(ex.modified)
        try:
            self.runtime.emit_event(SOURCE, EXECUTION_STATUS_CHANGE, detail, [ex.pipeline_arn, ex.arn])
        except Exception:  # noqa: BLE001 - the runtime may be stopping
            log.exception("could not emit the pipeline status change")

    def _run_step(self, ex: Execution, step: dict[str, Any]) -> None:
        record = StepRecord(step["Name"], step["Type"], status="Executing")
        ex.steps.append(record)
        ex.modified = time.time()
        log.info("pipeline %s: step %s (%s)", ex.execution_id, record.name, record.type)
        try:
            runner = {
                "Processing": self._processing,
                "Training": self._training,
                "Condition": self._condition,
                "RegisterModel": self._register,
                "Fail": self._fail,
            }.get(step["Type"])
            if runner is None:
                raise StepFailed(f"step type {step['Type']} is not run locally")
            self._with_retries(ex, step, record, runner)
        except StepFailed as exc:
            record.status, record.failure, record.end = "Failed", str(exc), time.time()
            self._step_event(ex, record)
            raise
        except Exception as exc:
            record.status, record.failure, record.end = "Failed", f"{type(exc).__name__}: {exc}", time.time()
            self._step_event(ex, record)
            raise StepFailed(f"step {record.name} failed: {record.failure}") from exc
        record.status, record.end = "Succeeded", time.time()

    def _with_retries(self, ex: Execution, step: dict[str, Any], record: StepRecord, runner: Callable) -> None:
        """Run a step, retrying the failures its RetryPolicies name (interval * backoff^n, attempts or minutes)."""
        first = time.monotonic()
        retries: dict[int, int] = {}  # policy index -> retries it granted
        while True:
            try:
                faults = self._faults.get(record.name)
                if faults:
                    kind, message = faults.pop(0)
                    raise StepFailed(message, exception_type=kind)
                runner(ex, step, record)
                return
            except StepFailed as exc:
                policy_index = _matching_policy(step.get("RetryPolicies", []), exc.exception_type)
                if policy_index is None or ex.stop_requested:
                    raise
                policy = step["RetryPolicies"][policy_index]
                done = retries.get(policy_index, 0)
                interval = float(policy.get("IntervalSeconds", 1)) * float(policy.get("BackoffRate", 2.0)) ** done
                if "MaxAttempts" in policy and done >= int(policy["MaxAttempts"]):
                    raise
                if "ExpireAfterMin" in policy and time.monotonic() + interval - first > 60 * policy["ExpireAfterMin"]:
                    raise
                retries[policy_index] = done + 1
                record.attempts += 1
                log.info(
                    "step %s: %s (%s), retry %d in %.0fs", record.name, exc, exc.exception_type, done + 1, interval
                )
                deadline = time.monotonic() + interval
                while time.monotonic() < deadline and not ex.stop_requested:
                    time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def _step_event(self, ex: Execution, record: StepRecord) -> None:
        detail = {
            "pipelineArn": ex.pipeline_arn,
            "pipelineExecutionArn": ex.arn,
            "stepName": record.name,
            "stepType": record.type,
            "currentStepStatus": record.status,
            "failureReason": record.failure,
            "stepStartTime": _iso(record.start),
            "stepEndTime": _iso(record.end or time.time()),
            "metadata": record.metadata,
        }
        try:
            self.runtime.emit_event(SOURCE, STEP_STATUS_CHANGE, detail, [ex.pipeline_arn, ex.arn])
        except Exception:  # noqa: BLE001
            log.exception("could not emit the step status change")

    # ------------------------------------------------------------------ expressions
    def resolve(self, ex: Execution, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(ex, v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Get"}:
            return self._get(ex, value["Get"])
        if set(value) == {"Std:Join"}:
            spec = value["Std:Join"]
            return str(spec["On"]).join(str(self.resolve(ex, v)) for v in spec["Values"])
        if set(value) == {"Std:JsonGet"}:
            spec = value["Std:JsonGet"]
            ref = spec["PropertyFile"]["Get"] if isinstance(spec["PropertyFile"], dict) else spec["PropertyFile"]
            m = _GET_STEP.match(ref)
            if not m:
                raise StepFailed(f"bad property file reference {ref}")
            key = f"{m.group(1)}.{m.group(2).split('.', 1)[1]}"
            path = ex.property_files.get(key)
            if path is None or not path.is_file():
                raise StepFailed(f"property file {key} is not available")
            return _json_path(json.loads(path.read_text()), spec["Path"])
        return {k: self.resolve(ex, v) for k, v in value.items()}

    def _get(self, ex: Execution, ref: str) -> Any:
        if ref.startswith("Parameters."):
            return ex.parameters[ref.split(".", 1)[1]]
        if ref == "Execution.PipelineExecutionId":
            return ex.execution_id
        if ref == "Execution.PipelineExecutionArn":
            return ex.arn
        if ref == "Execution.PipelineName":
            return ex.pipeline_name
        if ref == "Execution.StartDateTime":
            return _iso(ex.created)
        m = _GET_STEP.match(ref)
        if m:
            props = ex.properties.get(m.group(1))
            if props is None:
                raise StepFailed(f"{ref}: step {m.group(1)} has not run")
            return _property(props, m.group(2))
        raise StepFailed(f"unsupported reference {ref}")

    # ------------------------------------------------------------------ S3
    def _download(self, uri: str, dest: Path, optional: bool = False) -> int:
        s3 = self.runtime.client("s3")
        bucket, _, key = uri[5:].partition("/")
        dest.mkdir(parents=True, exist_ok=True)
        count = 0
        prefix = key
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :].lstrip("/") or Path(obj["Key"]).name
                if obj["Key"].endswith("/"):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
                count += 1
        if count == 0 and not optional:
            raise StepFailed(f"no objects at {uri}")
        return count

    def _upload(self, src: Path, uri: str) -> None:
        s3 = self.runtime.client("s3")
        bucket, _, prefix = uri[5:].partition("/")
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(src).as_posix()}")

    def _sync_up(self, src: Path, uri: str, sent: dict[str, tuple[int, int]]) -> None:
        """Upload the files of ``src`` that are new or changed since the last sync (SageMaker's checkpoint sync)."""
        s3 = self.runtime.client("s3")
        bucket, _, prefix = uri[5:].partition("/")
        for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
            rel = path.relative_to(src).as_posix()
            try:
                st = path.stat()
            except FileNotFoundError:  # replaced while we looked
                continue
            stamp = (st.st_size, st.st_mtime_ns)
            if sent.get(rel) == stamp:
                continue
            s3.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{rel}")
            sent[rel] = stamp

    # ------------------------------------------------------------------ step runners
    def _subprocess(
        self,
        ex: Execution,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        while_running: Callable[[], None] | None = None,
        reclaim: Callable[[], bool] | None = None,
    ) -> int:
        """Run a job's process; returns SPOT_INTERRUPTED when ``reclaim()`` said to kill it, raises on failure."""
        log_path = ex.root / f"{name}.log"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        interrupted = False
        with open(log_path, "ab") as fh:
            fh.write(f"$ {' '.join(cmd)}\n".encode())
            fh.flush()
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=str(ex.root))
            self._proc = proc
            try:
                next_sync = 0.0
                while proc.poll() is None:
                    if reclaim is not None and reclaim():
                        proc.kill()
                        proc.wait()
                        interrupted = True
                        break
                    if while_running is not None and time.monotonic() >= next_sync:
                        while_running()
                        next_sync = time.monotonic() + 2.0
                    time.sleep(0.2)
                rc = proc.wait()
            finally:
                self._proc = None
        if interrupted and not ex.stop_requested:
            return SPOT_INTERRUPTED
        if rc != 0:
            raise StepFailed(f"step {name} failed (exit {rc}): {_last_error(log_path)}")
        return 0

    def _processing(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        args = self.resolve(ex, step["Arguments"])
        app = args["AppSpecification"]
        entry = " ".join(app.get("ContainerEntrypoint", []))
        if "job.py" not in entry:
            raise StepFailed(f"processing step {record.name}: only Loupe's job.py runs locally")
        root = ex.root / record.name / "opt" / "ml"
        job_name = f"pipelines-{ex.execution_id}-{record.name}".lower()
        record.metadata = {"ProcessingJob": {"Arn": _arn(self.runtime, f"processing-job/{job_name}")}}

        def local(path: str) -> Path:
            if not path.startswith("/opt/ml/"):
                raise StepFailed(f"processing path {path} is outside /opt/ml")
            return root / path[len("/opt/ml/") :]

        for inp in args.get("ProcessingInputs", []):
            s3in = inp["S3Input"]
            self._download(s3in["S3Uri"], local(s3in["LocalPath"]), optional=inp.get("InputName") == "code")
        outputs = args.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for out in outputs:
            local(out["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(self.training_dir / "job.py"), *[str(a) for a in app.get("ContainerArguments", [])]]
        env = {k: str(v) for k, v in (args.get("Environment") or {}).items()}
        env["LOUPE_OPT_ML"] = str(root)
        self._subprocess(ex, record.name, cmd, env)
        props: dict[str, Any] = {"ProcessingOutputConfig": {"Outputs": {}}, "ProcessingJobStatus": "Completed"}
        for out in outputs:
            s3out = out["S3Output"]
            self._upload(local(s3out["LocalPath"]), s3out["S3Uri"])
            props["ProcessingOutputConfig"]["Outputs"][out["OutputName"]] = {
                "OutputName": out["OutputName"],
                "S3Output": {"S3Uri": s3out["S3Uri"], "LocalPath": s3out["LocalPath"]},
            }
        ex.properties[record.name] = props
        by_output = {o["OutputName"]: local(o["S3Output"]["LocalPath"]) for o in outputs}
        for pf in step.get("PropertyFiles", []):
            ex.property_files[f"{record.name}.{pf['PropertyFileName']}"] = by_output[pf["OutputName"]] / pf["FilePath"]

    def _training(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        args = self.resolve(ex, step["Arguments"])
        validate_training_request(args)
        hps = {k: str(v) for k, v in (args.get("HyperParameters") or {}).items()}
        program = hps.get("sagemaker_program")
        if not program or not (self.training_dir / program).is_file():
            raise StepFailed(f"training step {record.name}: entry point {program!r} not found in training/")
        root = ex.root / record.name / "opt" / "ml"
        job_name = f"pipelines-{ex.execution_id}-{record.name}".lower()
        record.metadata = {"TrainingJob": {"Arn": _arn(self.runtime, f"training-job/{job_name}")}}
        env = {k: str(v) for k, v in (args.get("Environment") or {}).items()}
        for channel in args.get("InputDataConfig", []):
            name = channel["ChannelName"]
            dest = root / "input" / "data" / name
            self._download(channel["DataSource"]["S3DataSource"]["S3Uri"], dest)
            env[f"SM_CHANNEL_{name.upper()}"] = str(dest)
        model_dir, output_dir = root / "model", root / "output"
        (output_dir / "data").mkdir(parents=True, exist_ok=True)
        model_dir.mkdir(parents=True, exist_ok=True)
        user_hps = {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
        env.update(
            {
                "SM_MODEL_DIR": str(model_dir),
                "SM_OUTPUT_DIR": str(output_dir),
                "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
                "SM_HPS": json.dumps(user_hps),
                "SM_CURRENT_HOST": "algo-1",
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_TRAINING_ENV": json.dumps({"job_name": job_name, "hyperparameters": user_hps}),
                "LOUPE_PROGRESS_FILE": str(ex.root / "progress.json"),
                **{f"SM_HP_{k.upper()}": v for k, v in user_hps.items()},
                "LOUPE_OPT_ML": str(root),
            }
        )
        checkpoint = args.get("CheckpointConfig")
        local_ckpt: Path | None = None
        sent: dict[str, tuple[int, int]] = {}
        if checkpoint:
            local_path = checkpoint.get("LocalPath") or "/opt/ml/checkpoints"
            if not local_path.startswith("/opt/ml/"):
                raise StepFailed(f"checkpoint path {local_path} is outside /opt/ml")
            local_ckpt = root / local_path[len("/opt/ml/") :]
        cmd = [sys.executable, str(self.training_dir / program)]
        log_path = ex.root / f"{record.name}.log"
        started = time.monotonic()
        max_wait = (args.get("StoppingCondition") or {}).get("MaxWaitTimeInSeconds")
        while True:
            if local_ckpt is not None:
                # a (re)started instance begins with what the checkpoint prefix holds, nothing else
                shutil.rmtree(local_ckpt, ignore_errors=True)
                local_ckpt.mkdir(parents=True, exist_ok=True)
                got = self._download(checkpoint["S3Uri"], local_ckpt, optional=True)
                sent = {
                    p.relative_to(local_ckpt).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
                    for p in local_ckpt.rglob("*")
                    if p.is_file()
                }
                if got:
                    with open(log_path, "ab") as fh:
                        fh.write(f"[local sagemaker] {got} checkpoint file(s) from {checkpoint['S3Uri']}\n".encode())

            def sync(folder: Path | None = local_ckpt, sent: dict[str, tuple[int, int]] = sent) -> None:
                if folder is not None:
                    self._sync_up(folder, checkpoint["S3Uri"], sent)

            def reclaim(folder: Path | None = local_ckpt) -> bool:
                armed = self._interrupt
                if armed is None or not armed(folder or root):
                    return False
                self._interrupt = None
                return True

            try:
                rc = self._subprocess(ex, record.name, cmd, env, while_running=sync, reclaim=reclaim)
            except StepFailed as exc:
                failure = output_dir / "failure"
                if failure.is_file():
                    raise StepFailed(f"step {record.name} failed: {failure.read_text().strip()}") from exc
                raise
            finally:
                sync()
            if rc != SPOT_INTERRUPTED:
                break
            # Managed spot lifecycle: Training -> Interrupted -> Starting -> Downloading -> Training, within MaxWait
            # (https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training-status.html)
            shutil.rmtree(model_dir, ignore_errors=True)  # the new instance's /opt/ml/model starts empty
            model_dir.mkdir(parents=True)
            with open(log_path, "ab") as fh:
                fh.write(b"[local sagemaker] spot capacity reclaimed: job Interrupted, restarting on a new instance\n")
            if max_wait is not None and time.monotonic() - started > float(max_wait):
                raise StepFailed(f"step {record.name}: training job Stopped: MaxWaitTimeExceeded")
        archive = root / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(model_dir.iterdir()):
                tar.add(path, arcname=path.name)
        out_uri = f"{args['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job_name}/output/model.tar.gz"
        bucket, _, key = out_uri[5:].partition("/")
        self.runtime.client("s3").upload_file(str(archive), bucket, key)
        ex.properties[record.name] = {
            "ModelArtifacts": {"S3ModelArtifacts": out_uri},
            "TrainingJobName": job_name,
            "TrainingJobStatus": "Completed",
        }

    def _condition(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        args = step["Arguments"]
        outcome = all(self._check(ex, c) for c in args.get("Conditions", []))
        record.metadata = {"Condition": {"Outcome": "True" if outcome else "False"}}
        ex.properties[record.name] = {"Outcome": outcome}
        record.status, record.end = "Succeeded", time.time()
        for sub in args.get("IfSteps" if outcome else "ElseSteps", []):
            self._run_step(ex, sub)

    def _check(self, ex: Execution, cond: dict[str, Any]) -> bool:
        kind = cond["Type"]
        if kind in ("And", "Or"):
            results = [self._check(ex, c) for c in cond["Conditions"]]
            return all(results) if kind == "And" else any(results)
        if kind == "Not":
            return not self._check(ex, cond["Condition"])
        left, right = self.resolve(ex, cond.get("LeftValue")), self.resolve(ex, cond.get("RightValue"))
        ops = {
            "Equals": lambda a, b: a == b,
            "GreaterThan": lambda a, b: float(a) > float(b),
            "GreaterThanOrEqualTo": lambda a, b: float(a) >= float(b),
            "LessThan": lambda a, b: float(a) < float(b),
            "LessThanOrEqualTo": lambda a, b: float(a) <= float(b),
        }
        if kind not in ops:
            raise StepFailed(f"condition type {kind} is not evaluated locally")
        return bool(ops[kind](left, right))

    def _register(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        args = self.resolve(ex, step["Arguments"])
        allowed = {
            "ModelPackageGroupName",
            "ModelPackageDescription",
            "InferenceSpecification",
            "ModelApprovalStatus",
            "ModelMetrics",
            "CustomerMetadataProperties",
            "MetadataProperties",
            "DriftCheckBaselines",
            "Domain",
            "Task",
            "SamplePayloadUrl",
        }
        kwargs = {k: v for k, v in args.items() if k in allowed and v not in (None, {}, "")}
        if "CustomerMetadataProperties" in kwargs:
            kwargs["CustomerMetadataProperties"] = {k: str(v) for k, v in kwargs["CustomerMetadataProperties"].items()}
        metrics = kwargs.get("ModelMetrics")
        if metrics:
            kwargs["ModelMetrics"] = {k: v for k, v in metrics.items() if v}
        arn = self.runtime.client("sagemaker").create_model_package(**kwargs)["ModelPackageArn"]
        record.metadata = {"RegisterModel": {"Arn": arn}}
        ex.properties[record.name] = {"ModelPackageArn": arn}

    def _fail(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        message = str(self.resolve(ex, step["Arguments"].get("ErrorMessage", "")))
        record.metadata = {"Fail": {"ErrorMessage": message}}
        raise StepFailed(message)


# ---------------------------------------------------------------------- helpers
def _ordered(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top-level steps in dependency order (references to other steps and DependsOn)."""
    by_name = {s["Name"]: s for s in steps}
    deps = {}
    for s in steps:
        text = json.dumps(s.get("Arguments", {})) + json.dumps(s.get("PropertyFiles", []))
        found = {m for m in re.findall(r'"Steps\.([^."]+)\.', text) if m in by_name and m != s["Name"]}
        deps[s["Name"]] = found | set(s.get("DependsOn", []))
    done: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(done) < len(steps):
        ready = [s for s in steps if s["Name"] not in seen and deps[s["Name"]] <= seen]
        if not ready:
            raise StepFailed("the pipeline's step dependencies form a cycle")
        done.append(ready[0])
        seen.add(ready[0]["Name"])
    return done


def _matching_policy(policies: list[dict[str, Any]], exception_type: str | None) -> int | None:
    if exception_type not in RETRYABLE_TYPES:
        return None
    for i, policy in enumerate(policies):
        if exception_type in policy.get("ExceptionType", []):
            return i
    return None


def _property(props: dict[str, Any], path: str) -> Any:
    cur: Any = props
    for part in re.findall(r"[^.\[\]]+|\['[^']*'\]", path):
        key = part[2:-2] if part.startswith("['") else part
        if not isinstance(cur, dict) or key not in cur:
            raise StepFailed(f"property {path} is not available")
        cur = cur[key]
    return cur


def _json_path(data: Any, path: str) -> Any:
    cur = data
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise StepFailed(f"JsonGet: {path} not found in the property file")
    return cur


def _typed(value: str, kind: str) -> Any:
    if kind == "Integer":
        return int(value)
    if kind == "Float":
        return float(value)
    if kind == "Boolean":
        return str(value).lower() == "true"
    return value


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _arn(runtime: Any, resource: str) -> str:
    return f"arn:aws:sagemaker:{runtime.region}:123456789012:{resource}"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _last_error(log_path: Path) -> str:
    """The most telling line of a failed step's log (an 'error:' line, else the last one)."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "error:" in line.lower():
            return line[-500:]
    return lines[-1][-500:] if lines else "no output"


def render_definition(runtime: Any, definition_text: str) -> str:
    """The generated definition with the template's ``${...}`` references resolved against the local stack."""
    refs = {
        "${ArtifactBucket}": runtime.physical("ArtifactBucket"),
        "${SageMakerExecutionRole.Arn}": runtime.arn("SageMakerExecutionRole"),
        "${ModelPackageGroup.ModelPackageGroupName}": runtime.resources["ModelPackageGroup"].attrs[
            "ModelPackageGroupName"
        ],
        "${AWS::Region}": runtime.region,
        "${AWS::StackName}": getattr(runtime, "stack_name", "loupe"),
    }
    for ref, value in refs.items():
        definition_text = definition_text.replace(ref, value)
    if str(getattr(runtime, "parameter_values", {}).get("TrainingUseSpot", "true")) == "false":
        # what the template's UseSpotTraining condition deploys when false (training/pipeline.py: template_body)
        definition = json.loads(definition_text)
        for step in definition["Steps"]:
            if step["Type"] == "Training":
                step["Arguments"]["EnableManagedSpotTraining"] = False
                step["Arguments"]["StoppingCondition"].pop("MaxWaitTimeInSeconds", None)
        definition_text = json.dumps(definition, indent=1, sort_keys=True)
    return definition_text


def ensure_pipeline(runtime: Any) -> str:
    """The training pipeline's name: the template's ``TrainingPipeline``, else created from the generated JSON."""
    res = runtime.resources.get("TrainingPipeline")
    if res is not None:
        return res.ref
    name = f"{getattr(runtime, 'stack_name', 'loupe')}-training"
    sm = runtime.client("sagemaker")
    if not any(p["PipelineName"] == name for p in sm.list_pipelines().get("PipelineSummaries", [])):
        text = (Path(runtime.root) / "training" / "pipeline_definition.json").read_text()
        sm.create_pipeline(
            PipelineName=name,
            PipelineDefinition=render_definition(runtime, text),
            RoleArn=runtime.arn("SageMakerExecutionRole"),
        )
    return name
