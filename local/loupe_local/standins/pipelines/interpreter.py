"""The SageMaker Pipelines interpreter: pure functions of a definition, its parameters and the steps' results.

What runs next (dependency order, a Condition step's branch), property references (``Get``, ``Std:Join``,
``Std:JsonGet``), conditions, the retry policy decisions and CreateTrainingJob's request checks. No I/O, no clocks
beyond the timestamps a record carries: the stand-in (``pipelines.py``) drives it, the job runner
(``jobs.py``) records what the jobs produced in the :class:`Execution`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_GET_STEP = re.compile(r"^Steps\.([^.]+)\.(.+)$")

# https://docs.aws.amazon.com/sagemaker/latest/dg/pipelines-retry-policy.html
RETRYABLE_TYPES = {
    "Step.SERVICE_FAULT",
    "Step.THROTTLING",
    "SageMaker.JOB_INTERNAL_ERROR",
    "SageMaker.CAPACITY_ERROR",
    "SageMaker.RESOURCE_LIMIT",
}


class StepFailed(Exception):
    """A step ended in failure; the message is the step's (and the execution's) FailureReason.

    ``exception_type`` is the retry-policy type of the failure ("SageMaker.CAPACITY_ERROR", ...), None when no
    policy may retry it (errors of the algorithm, refused requests).
    """

    def __init__(self, message: str, exception_type: str | None = None) -> None:
        super().__init__(message)
        self.exception_type = exception_type


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
    root: Path  # where the job runner keeps this execution's logs and job folders
    status: str = "Executing"
    failure: str = ""
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    steps: list[StepRecord] = field(default_factory=list)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)  # step name -> its properties
    property_files: dict[str, Any] = field(default_factory=dict)  # "Step.PropertyFileName" -> its JSON document
    stop_requested: bool = False
    role_arn: str | None = None  # the pipeline's RoleArn: its jobs and RegisterModel act with it

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
        }
        tracked = experiment_config(self)
        if tracked is not None:
            out["PipelineExperimentConfig"] = tracked
        if self.failure:
            out["FailureReason"] = self.failure
        return out


def experiment_config(ex: Execution) -> dict[str, str] | None:
    """The SageMaker Experiments experiment and trial of an execution, or None when its definition asks for none
    (``"PipelineExperimentConfig": null``). With a config, Pipelines creates both (when missing) as the pipeline's
    role before the first step: an execution role without the Experiments actions cannot run it."""
    config = ex.definition.get("PipelineExperimentConfig")
    if not config:
        return None
    return {
        "ExperimentName": str(resolve(ex, config.get("ExperimentName", {"Get": "Execution.PipelineName"}))),
        "TrialName": str(resolve(ex, config.get("TrialName", {"Get": "Execution.PipelineExecutionId"}))),
    }


# ---------------------------------------------------------------------- parameters and order
def parameter_problem(definition: dict[str, Any], given: list[dict[str, Any]] | None) -> str | None:
    """Why SageMaker refuses StartPipelineExecution's ``PipelineParameters`` for this definition (a
    ValidationException, no execution), or None. A caller sets only the parameters the definition declares: a name it
    does not declare is refused, never ignored; an empty value is too short; a value must parse as the parameter's
    type. (The SDK's local mode, which mirrors the service for this,
    refuses the same: ``sagemaker.local.entities._LocalPipelineExecution._initialize_and_validate_parameters``.)"""
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    for p in given or []:
        name, value = p.get("Name"), p.get("Value")
        if name not in declared:
            return f"Unknown parameter '{name}'"
        if value in (None, ""):
            return f'Parameter {name} value "" is too short (length: 0, required minimum: 1).'
        try:
            _typed(value, declared[name].get("Type", "String"))
        except ValueError:
            return f"Unexpected type for parameter '{name}'. Expected {declared[name].get('Type')} but found {value!r}."
    return None


def execution_parameters(definition: dict[str, Any], given: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The definition's parameter defaults overridden by StartPipelineExecution's ``PipelineParameters``."""
    problem = parameter_problem(definition, given)
    if problem:
        raise ValueError(problem)
    params = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}
    types = {p["Name"]: p.get("Type", "String") for p in definition.get("Parameters", [])}
    for p in given or []:
        params[p["Name"]] = _typed(p["Value"], types[p["Name"]])
    return params


def ordered_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


# ---------------------------------------------------------------------- expressions
def resolve(ex: Execution, value: Any) -> Any:
    """``value`` with every ``Get`` / ``Std:Join`` / ``Std:JsonGet`` replaced by what it refers to."""
    if isinstance(value, list):
        return [resolve(ex, v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Get"}:
        return reference(ex, value["Get"])
    if set(value) == {"Std:Join"}:
        spec = value["Std:Join"]
        return str(spec["On"]).join(str(resolve(ex, v)) for v in spec["Values"])
    if set(value) == {"Std:JsonGet"}:
        spec = value["Std:JsonGet"]
        ref = spec["PropertyFile"]["Get"] if isinstance(spec["PropertyFile"], dict) else spec["PropertyFile"]
        m = _GET_STEP.match(ref)
        if not m:
            raise StepFailed(f"bad property file reference {ref}")
        key = f"{m.group(1)}.{m.group(2).split('.', 1)[1]}"
        if key not in ex.property_files:
            raise StepFailed(f"property file {key} is not available")
        return _json_path(ex.property_files[key], spec["Path"])
    return {k: resolve(ex, v) for k, v in value.items()}


def reference(ex: Execution, ref: str) -> Any:
    """A ``Get``: a parameter, an execution variable or a step property."""
    if ref.startswith("Parameters."):
        return ex.parameters[ref.split(".", 1)[1]]
    if ref == "Execution.PipelineExecutionId":
        return ex.execution_id
    if ref == "Execution.PipelineExecutionArn":
        return ex.arn
    if ref == "Execution.PipelineName":
        return ex.pipeline_name
    if ref == "Execution.StartDateTime":
        return iso(ex.created)
    m = _GET_STEP.match(ref)
    if m:
        props = ex.properties.get(m.group(1))
        if props is None:
            raise StepFailed(f"{ref}: step {m.group(1)} has not run")
        return _property(props, m.group(2))
    raise StepFailed(f"unsupported reference {ref}")


# ---------------------------------------------------------------------- conditions
_COMPARISONS = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: float(a) > float(b),
    "GreaterThanOrEqualTo": lambda a, b: float(a) >= float(b),
    "LessThan": lambda a, b: float(a) < float(b),
    "LessThanOrEqualTo": lambda a, b: float(a) <= float(b),
}


def condition_branch(ex: Execution, arguments: dict[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
    """A Condition step's outcome (all its conditions hold) and the steps that run next (IfSteps / ElseSteps)."""
    outcome = all(check(ex, c) for c in arguments.get("Conditions", []))
    return outcome, list(arguments.get("IfSteps" if outcome else "ElseSteps", []))


def check(ex: Execution, cond: dict[str, Any]) -> bool:
    kind = cond["Type"]
    if kind in ("And", "Or"):
        results = [check(ex, c) for c in cond["Conditions"]]
        return all(results) if kind == "And" else any(results)
    if kind == "Not":
        return not check(ex, cond["Condition"])
    left, right = resolve(ex, cond.get("LeftValue")), resolve(ex, cond.get("RightValue"))
    if kind not in _COMPARISONS:
        raise StepFailed(f"condition type {kind} is not evaluated locally")
    return bool(_COMPARISONS[kind](left, right))


# ---------------------------------------------------------------------- retries
def retry_delay(
    policies: list[dict[str, Any]], failure: StepFailed, retries: Mapping[int, int], elapsed: float
) -> tuple[int, float] | None:
    """Whether a step's RetryPolicies retry ``failure``: (policy index, seconds to wait) or None (the step fails).

    ``retries`` holds the retries each policy granted so far, ``elapsed`` the seconds since the first attempt;
    the wait is IntervalSeconds * BackoffRate^n, within MaxAttempts or ExpireAfterMin.
    """
    index = matching_policy(policies, failure.exception_type)
    if index is None:
        return None
    policy = policies[index]
    done = retries.get(index, 0)
    interval = float(policy.get("IntervalSeconds", 1)) * float(policy.get("BackoffRate", 2.0)) ** done
    if "MaxAttempts" in policy and done >= int(policy["MaxAttempts"]):
        return None
    if "ExpireAfterMin" in policy and elapsed + interval > 60 * policy["ExpireAfterMin"]:
        return None
    return index, interval


def matching_policy(policies: list[dict[str, Any]], exception_type: str | None) -> int | None:
    if exception_type not in RETRYABLE_TYPES:
        return None
    for i, policy in enumerate(policies):
        if exception_type in policy.get("ExceptionType", []):
            return i
    return None


# ---------------------------------------------------------------------- requests
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


REGISTER_ARGUMENTS = {
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


def register_request(args: dict[str, Any]) -> dict[str, Any]:
    """A RegisterModel step's resolved arguments as CreateModelPackage takes them."""
    kwargs = {k: v for k, v in args.items() if k in REGISTER_ARGUMENTS and v not in (None, {}, "")}
    if "CustomerMetadataProperties" in kwargs:
        kwargs["CustomerMetadataProperties"] = {k: str(v) for k, v in kwargs["CustomerMetadataProperties"].items()}
    metrics = kwargs.get("ModelMetrics")
    if metrics:
        kwargs["ModelMetrics"] = {k: v for k, v in metrics.items() if v}
    return kwargs


# ---------------------------------------------------------------------- helpers
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


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
