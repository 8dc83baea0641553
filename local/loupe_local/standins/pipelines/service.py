"""Runs SageMaker Pipeline executions locally: moto stores pipelines and executions but never runs them.

moto answers ``StartPipelineExecution`` (so its execution list stays right); this stand-in sees the answer
(``after``), reads the pipeline definition moto stores, and runs its steps in a worker thread. Three parts:

- this module: the HTTP API (``DescribePipelineExecution``, ``ListPipelineExecutionSteps`` and
  ``StopPipelineExecution`` for the executions it runs, SageMaker's ``ResourceNotFound`` for an execution nobody
  started), the worker that drives executions step by step, and the events AWS would emit and moto does not:
  "SageMaker Model Building Pipeline Execution Status Change" (and the step variant for failed steps) and
  "SageMaker Model Package State Change" when a package is registered (approval changes are the model registry
  observer's, ``modelregistry.py``);
- ``interpreter.py`` (pure): step order, property references, Condition steps, retry policy decisions
  (``RetryPolicies`` are honoured for failures that carry an exception type, only injected ones locally:
  :meth:`PipelineExecutions.inject_fault`), CreateTrainingJob's request checks (a refused request fails the step
  with the pipeline's "Failed to invoke" reason);
- ``jobs.py``: Processing and Training jobs as subprocesses under SageMaker's container contract,
  checkpoint sync and the spot-reclaim test hook (``standin.jobs.interrupt_training``).

RegisterModel steps call ``create_model_package`` on moto's model registry; Fail steps fail the execution with
their message. Step logs go to ``<state_dir>/pipelines/<execution id>/<step>.log``; training progress (epoch,
losses, val mAP) is in ``progress.json`` there and in :meth:`PipelineExecutions.status`.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loupe_local.standins.base import AwsRequest, Response, StandIn, StandInHost, error, role_client
from loupe_local.standins.pipelines import interpreter
from loupe_local.standins.pipelines.interpreter import Execution, StepFailed, StepRecord
from loupe_local.standins.pipelines.jobs import JobRunner

log = logging.getLogger("loupe_local.pipelines")

SOURCE = "aws.sagemaker"
EXECUTION_STATUS_CHANGE = "SageMaker Model Building Pipeline Execution Status Change"
STEP_STATUS_CHANGE = "SageMaker Model Building Pipeline Execution Step Status Change"
PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
ANSWERED = {"DescribePipelineExecution", "ListPipelineExecutionSteps", "StopPipelineExecution"}
OBSERVED = {"StartPipelineExecution", "CreateModelPackage"}
# PipelineExecutionArn's pattern in the API reference (API_DescribePipelineExecution, ..._ListPipelineExecutionSteps)
_EXECUTION_ARN_PATTERN = r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:pipeline\/.*\/execution\/.*"
_EXECUTION_ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:pipeline/(.*)/execution/.*")

StepRunner = Callable[[Execution, dict[str, Any], StepRecord], None]


class PipelineExecutions(StandIn):
    name = "sagemaker-pipelines"

    def __init__(self) -> None:
        self.executions: dict[str, Execution] = {}
        self.jobs: JobRunner | None = None  # the job runner, once attached
        self._queue: queue.Queue[Execution | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._running: Execution | None = None  # the execution whose steps run now (the others wait in the queue)
        self._lock = threading.Lock()
        self._faults: dict[str, list[tuple[str, str]]] = {}  # step name -> failures its next attempts raise

    # ------------------------------------------------------------------ test seam (what AWS does to a step)
    def inject_fault(self, step: str, exception_type: str, message: str, times: int = 1) -> None:
        """Make the next ``times`` attempts of ``step`` fail as SageMaker would with ``exception_type``."""
        self._faults.setdefault(step, []).extend([(exception_type, message)] * times)

    # ------------------------------------------------------------------ seam
    def attach(self, runtime: StandInHost) -> None:
        super().attach(runtime)
        self.jobs = JobRunner(runtime, Path(runtime.root) / "training")
        self.work_dir = Path(runtime.state_dir) / "pipelines"
        self._worker = threading.Thread(target=self._run_queue, name="pipeline-executions", daemon=True)
        self._worker.start()

    def handles(self, request: AwsRequest) -> bool:
        if request.service == "sagemaker" and request.target == "StartPipelineExecution":
            return self._refusal(request.json()) is not None  # moto starts any execution; SageMaker validates
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

    def _refusal(self, req: dict[str, Any]) -> str | None:
        """Why SageMaker refuses this StartPipelineExecution's parameters, or None (an unknown pipeline: moto's)."""
        from botocore.exceptions import ClientError

        try:
            pipeline = self.runtime.client("sagemaker").describe_pipeline(PipelineName=req.get("PipelineName", ""))
            definition = json.loads(pipeline["PipelineDefinition"])
        except (ClientError, KeyError, ValueError):
            return None
        return interpreter.parameter_problem(definition, req.get("PipelineParameters"))

    def handle(self, request: AwsRequest) -> Response:
        if request.target == "StartPipelineExecution":
            # a ValidationException (the Common Errors of the SageMaker API reference); no execution is created
            return error("ValidationException", self._refusal(request.json()) or "invalid pipeline parameters")
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
                # only this execution's own job: one still queued stops before its first step (``_run``) and
                # leaves the job of the execution ahead of it running
                if self.jobs is not None and self._running is execution:
                    self.jobs.terminate()
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
        for arn, ex in list(self.executions.items()):  # a snapshot: the runner thread adds executions meanwhile
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
        if self.jobs is not None:
            self.jobs.terminate(wait=10)
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout=15)

    # ------------------------------------------------------------------ model package events
    def _package_event(self, arn: str) -> None:
        desc = self.runtime.client("sagemaker").describe_model_package(ModelPackageName=arn)
        desc.pop("ResponseMetadata", None)
        self.runtime.emit_event(SOURCE, PACKAGE_STATE_CHANGE, json.loads(json.dumps(desc, default=str)), [arn])

    # ------------------------------------------------------------------ executions
    def _start(self, req: dict[str, Any], arn: str) -> None:
        sm = self.runtime.client("sagemaker")
        name = req["PipelineName"]
        pipeline = sm.describe_pipeline(PipelineName=name)
        definition = json.loads(pipeline["PipelineDefinition"])
        params = interpreter.execution_parameters(definition, req.get("PipelineParameters"))
        execution = Execution(
            arn=arn,
            pipeline_name=pipeline["PipelineName"],
            pipeline_arn=pipeline["PipelineArn"],
            display_name=req.get("PipelineExecutionDisplayName") or arn.rsplit("/", 1)[-1],
            description=req.get("PipelineExecutionDescription", ""),
            parameters=params,
            definition=definition,
            root=self.work_dir / arn.rsplit("/", 1)[-1],
            role_arn=pipeline.get("RoleArn"),
        )
        execution.root.mkdir(parents=True, exist_ok=True)
        track_experiment(sm, execution)
        with self._lock:
            self.executions[arn] = execution
        self._status_event(execution, None)
        self._queue.put(execution)

    def _run_queue(self) -> None:
        while True:
            execution = self._queue.get()
            if execution is None:
                return
            self._running = execution
            try:
                self._run(execution)
            except Exception as exc:  # the execution fails, the local AWS keeps running
                log.exception("pipeline execution %s crashed", execution.arn)
                self._finish(execution, "Failed", f"local runner error: {exc}")
            finally:
                self._running = None

    def _run(self, ex: Execution) -> None:
        steps = interpreter.ordered_steps(ex.definition["Steps"])
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
            "executionStartTime": interpreter.iso(ex.created),
        }
        if ex.status in ("Succeeded", "Failed", "Stopped"):
            detail["executionEndTime"] = interpreter.iso(ex.modified)
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
            runner: StepRunner | None = {
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

    def _with_retries(self, ex: Execution, step: dict[str, Any], record: StepRecord, runner: StepRunner) -> None:
        """Run a step, retrying the failures its RetryPolicies name (the interpreter decides whether and when)."""
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
                decision = interpreter.retry_delay(
                    step.get("RetryPolicies", []), exc, retries, time.monotonic() - first
                )
                if decision is None or ex.stop_requested:
                    raise
                policy_index, interval = decision
                retries[policy_index] = retries.get(policy_index, 0) + 1
                record.attempts += 1
                log.info(
                    "step %s: %s (%s), retry %d in %.0fs",
                    record.name,
                    exc,
                    exc.exception_type,
                    retries[policy_index],
                    interval,
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
            "stepStartTime": interpreter.iso(record.start),
            "stepEndTime": interpreter.iso(record.end or time.time()),
            "metadata": record.metadata,
        }
        try:
            self.runtime.emit_event(SOURCE, STEP_STATUS_CHANGE, detail, [ex.pipeline_arn, ex.arn])
        except Exception:  # noqa: BLE001
            log.exception("could not emit the step status change")

    # ------------------------------------------------------------------ step runners
    def _processing(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        assert self.jobs is not None, "attach() first"
        self.jobs.processing(ex, step, record, interpreter.resolve(ex, step["Arguments"]))

    def _training(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        assert self.jobs is not None, "attach() first"
        self.jobs.training(ex, record, interpreter.resolve(ex, step["Arguments"]))

    def _condition(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        outcome, next_steps = interpreter.condition_branch(ex, step["Arguments"])
        record.metadata = {"Condition": {"Outcome": "True" if outcome else "False"}}
        ex.properties[record.name] = {"Outcome": outcome}
        record.status, record.end = "Succeeded", time.time()
        for sub in next_steps:
            self._run_step(ex, sub)

    def _register(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        kwargs = interpreter.register_request(interpreter.resolve(ex, step["Arguments"]))
        # the step registers with the pipeline's role (API_CreatePipeline.html, RoleArn: "the role used by the
        # pipeline to access and create resources")
        arn = role_client(self.runtime, ex.role_arn, "sagemaker").create_model_package(**kwargs)["ModelPackageArn"]
        record.metadata = {"RegisterModel": {"Arn": arn}}
        ex.properties[record.name] = {"ModelPackageArn": arn}

    def _fail(self, ex: Execution, step: dict[str, Any], record: StepRecord) -> None:
        message = str(interpreter.resolve(ex, step["Arguments"].get("ErrorMessage", "")))
        record.metadata = {"Fail": {"ErrorMessage": message}}
        raise StepFailed(message)


# ---------------------------------------------------------------------- the definition the local stack runs
def template_definition(runtime: Any) -> str:
    """template.yaml's TrainingPipeline body resolved for this stack, as the provisioner resolves it (spot included)."""
    from loupe_local.template import Resolver, load_yaml

    template = load_yaml(Path(runtime.root) / "template.yaml")
    resolver = Resolver(
        template,
        runtime.parameter_values,
        runtime.stack_name,
        runtime.region,
        ref=runtime.physical,
        get_att=lambda logical, attr: runtime.resources[logical].attrs[attr],
    )
    body = template["Resources"]["TrainingPipeline"]["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    return resolver.resolve(body)


def ensure_pipeline(runtime: Any) -> str:
    """The training pipeline's name: the template's ``TrainingPipeline``, else created from the template's body."""
    res = runtime.resources.get("TrainingPipeline")
    if res is not None:
        return res.ref
    name = f"{runtime.stack_name}-training"
    sm = runtime.client("sagemaker")
    if not any(p["PipelineName"] == name for p in sm.list_pipelines().get("PipelineSummaries", [])):
        sm.create_pipeline(
            PipelineName=name,
            PipelineDefinition=template_definition(runtime),
            RoleArn=runtime.arn("SageMakerExecutionRole"),
        )
    return name


def track_experiment(sm: Any, execution: Execution) -> dict[str, str] | None:
    """What Pipelines does for an execution whose definition has a PipelineExperimentConfig: the experiment and
    the trial, created when missing (SageMaker developer guide, "Amazon SageMaker Experiments integration")."""
    tracked = interpreter.experiment_config(execution)
    if tracked is None:
        return None
    for create, kwargs in (
        (sm.create_experiment, {"ExperimentName": tracked["ExperimentName"]}),
        (sm.create_trial, {"TrialName": tracked["TrialName"], "ExperimentName": tracked["ExperimentName"]}),
    ):
        try:
            create(**kwargs)
        except Exception as exc:  # an experiment of an earlier execution: "skipped if it already exists"
            if "exist" not in str(exc).lower():
                raise
    return tracked
