"""Every request Loupe makes is valid against the AWS service models botocore ships.

- the SDK-integration Task states of the three state machines (template.yaml's DefinitionSubstitutions applied;
  a ``.$`` value becomes a placeholder of the member's type, or of the intrinsic function's result type);
- the training/processing/register steps of the SageMaker pipeline definition (their ``Arguments`` are the
  Create*Job / CreateModelPackage requests; pipeline parameters resolve to their defaults);
- the parameters the training workflow passes to StartPipelineExecution, against the pipeline's parameters;
- the requests the domain code builds (CreateLabelingJob, CreateDeployment, CreateComponentVersion and every
  other call on the way), recorded from the real functions with fake clients.

boto3 validates client-side, but only on code paths that run against a real client, and botocore skips what the
service checks itself (maximum lengths and values, enums, patterns); moto's Step Functions engine sends its
requests with validation switched off. So this checks botocore's ``ParamValidator`` plus those service-side
constraints of the model. Each check also runs on a broken copy, so none can pass by checking nothing.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from botocore.model import OperationModel, Shape, StructureShape
from botocore.validate import ParamValidator

from loupe_local.template import Resolver, load_yaml

try:  # the models' patterns are Java regular expressions; \p{...} classes need the regex package
    import regex as _re_impl
except ImportError:  # without it, patterns Python's re cannot compile are not checked
    _re_impl = re

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"
ACCOUNT = "123456789012"
REGION = "us-east-1"

_SESSION = botocore.session.get_session()
_MODELS: dict[str, Any] = {}


def service_model(name: str) -> Any:
    if name not in _MODELS:
        _MODELS[name] = _SESSION.get_service_model(name)
    return _MODELS[name]


def operation(service: str, name_or_method: str) -> OperationModel:
    """An operation by its API name (``GetObject``), boto3 method (``get_object``) or ASL action (``getObject``)."""
    model = service_model(service)
    wanted = xform_name(name_or_method)
    for name in model.operation_names:
        if xform_name(name) == wanted:
            return model.operation_model(name)
    raise AssertionError(f"{service} has no operation {name_or_method}")


# ------------------------------------------------------------------ validation
Path_ = tuple[Any, ...]


def _check_range(kind: str, value: float, shape: Shape, path: Path_, out: list[str]) -> None:
    high = shape.metadata.get("max")
    if high is not None and value > high:
        out.append(f"{_fmt(path)}: {kind} {value} is above the service's maximum {high}")


def _fmt(path: Path_) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "<request>"


def service_constraints(value: Any, shape: Shape, path: Path_, dynamic: set[Path_], out: list[str]) -> None:
    """What the service checks and botocore does not: maximum sizes and values, enums, patterns."""
    if path in dynamic:
        return
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                service_constraints(item, shape.members[key], (*path, key), dynamic, out)
    elif kind == "list" and isinstance(value, list):
        _check_range("length", len(value), shape, path, out)
        for i, item in enumerate(value):
            service_constraints(item, shape.member, (*path, i), dynamic, out)
    elif kind == "map" and isinstance(value, dict):
        _check_range("entries", len(value), shape, path, out)
        for key, item in value.items():
            service_constraints(key, shape.key, (*path, f"<key {key}>"), dynamic, out)
            service_constraints(item, shape.value, (*path, key), dynamic, out)
    elif kind == "string" and isinstance(value, str):
        _check_range("length", len(value), shape, path, out)
        if shape.enum and value not in shape.enum:
            out.append(f"{_fmt(path)}: {value!r} is not one of {shape.enum}")
        pattern = shape.metadata.get("pattern")
        # the services match a pattern against the whole value (Java's matches()), as their API references show
        if pattern and not _matches(pattern, value):
            out.append(f"{_fmt(path)}: {value!r} does not match the pattern {pattern}")
    elif (
        kind in ("integer", "long", "float", "double")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        _check_range("value", value, shape, path, out)


def _matches(pattern: str, value: str) -> bool:
    try:
        return _re_impl.fullmatch(pattern, value) is not None
    except _re_impl.error:
        return True  # a Java construct this engine lacks: the service checks it, this test cannot


def problems(params: dict[str, Any], shape: StructureShape, dynamic: set[Path_] | None = None) -> list[str]:
    report = ParamValidator().validate(params, shape)
    found = [report.generate_report()] if report.has_errors() else []
    service_constraints(params, shape, (), dynamic or set(), found)
    return found


def sample(shape: Shape, depth: int = 0) -> Any:
    """A smallest valid value of a shape (required members only), for values only known at run time."""
    kind = shape.type_name
    if kind == "structure":
        if depth > 6:
            return {}
        return {m: sample(shape.members[m], depth + 1) for m in shape.required_members}
    if kind == "list":
        return [sample(shape.member, depth + 1) for _ in range(max(1, shape.metadata.get("min", 1)))]
    if kind == "map":
        return {}
    if kind == "string":
        return shape.enum[0] if shape.enum else "x" * max(1, shape.metadata.get("min", 1))
    if kind in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if kind in ("float", "double"):
        return float(max(1, shape.metadata.get("min", 1)))
    if kind == "boolean":
        return True
    if kind == "blob":
        return b"x"
    if kind == "timestamp":
        return datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    raise AssertionError(f"no sample for {kind}")


# ------------------------------------------------------------------ the state machines
def resolver(template: dict[str, Any]) -> Resolver:
    """Intrinsics resolved as a deployment would, with realistic names and ARNs for the stack's resources."""
    resources = template["Resources"]

    def arn(logical: str) -> str:
        kind, name = resources[logical]["Type"], f"loupe-{logical}"
        if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{name}"
        if kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name.lower()}"
        service = kind.split("::")[1].lower()
        return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical.lower()}/{name}"

    def ref(logical: str) -> str:
        kind = resources[logical]["Type"]
        if kind in ("AWS::SNS::Topic", "AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            return arn(logical)  # these resources' Ref is their ARN
        return f"loupe-{logical}".lower() if kind == "AWS::S3::Bucket" else f"loupe-{logical}"

    def get_att(logical: str, attr: str) -> str:
        return arn(logical) if attr == "Arn" else f"loupe-{logical}"

    return Resolver(template, {}, "loupe", REGION, ref, get_att)


def state_machines() -> dict[str, dict[str, Any]]:
    """Each state machine's ASL with its DefinitionSubstitutions applied (as SAM does at deploy time)."""
    template = load_yaml(TEMPLATE)
    r = resolver(template)
    out = {}
    for logical, res in template["Resources"].items():
        if res.get("Type") != "AWS::Serverless::StateMachine":
            continue
        props = res["Properties"]
        text = (REPO_ROOT / props["DefinitionUri"]).read_text()
        subs = {k: r.resolve(v) for k, v in (props.get("DefinitionSubstitutions") or {}).items()}
        for key, value in subs.items():
            text = text.replace("${" + key + "}", str(value))
        out[logical] = json.loads(text)
    return out


def task_states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in definition.get("States", {}).items():
        if state.get("Type") == "Task":
            yield name, state
        for branch in state.get("Branches", []):
            yield from task_states(branch)
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from task_states(state[key])


# Optimized integrations (Step Functions developer guide, "Integrating optimized services"): the API each calls,
# and the parameters that may be given as JSON which Step Functions serializes (connect-lambda: Payload;
# connect-sns: Message; connect-stepfunctions: Input; connect-sqs: MessageBody; connect-eventbridge: Detail).
OPTIMIZED = {
    "lambda": ("lambda", {"Payload"}),
    "sns": ("sns", {"Message"}),
    "states": ("stepfunctions", {"Input"}),
    "sqs": ("sqs", {"MessageBody"}),
    "events": ("events", {"Detail"}),
    "sagemaker": ("sagemaker", set()),
    "dynamodb": ("dynamodb", set()),
}
# AWS SDK integrations name a few services unlike botocore does
AWS_SDK_SERVICES = {"sfn": "stepfunctions", "sagemakerfeaturestoreruntime": "sagemaker-featurestore-runtime"}
# what the optimized Lambda integration adds to the Invoke response
LAMBDA_EXTRA_OUTPUT = {"SdkHttpMetadata", "SdkResponseMetadata"}
_RESOURCE = re.compile(
    r"^arn:aws:states:::(aws-sdk:)?([a-z0-9-]+):([A-Za-z0-9]+)(?:\.(sync(?::2)?|waitForTaskToken))?$"
)
_STRING_FNS = ("States.Format(", "States.JsonToString(", "States.Base64Encode(", "States.Base64Decode(", "States.Hash(")
_NUMBER_FNS = ("States.ArrayLength(", "States.MathAdd(", "States.MathRandom(")
_LIST_FNS = ("States.Array(", "States.ArrayPartition(", "States.ArrayRange(", "States.ArrayUnique(")


@dataclass
class Task:
    machine: str
    state: str
    operation: OperationModel
    aws_sdk: bool
    pattern: str | None
    serialized: set[str]
    definition: dict[str, Any]


def resolve_task(machine: str, name: str, state: dict[str, Any]) -> Task:
    m = _RESOURCE.match(state["Resource"])
    assert m, f"{machine}.{name}: {state['Resource']} is not an integration this test knows; add it"
    aws_sdk, service, action, pattern = bool(m.group(1)), m.group(2), m.group(3), m.group(4)
    if aws_sdk:
        botocore_name, serialized = AWS_SDK_SERVICES.get(service, service), set()
    else:
        assert service in OPTIMIZED, f"{machine}.{name}: optimized integration {service} unknown here; add it"
        botocore_name, serialized = OPTIMIZED[service]
    return Task(machine, name, operation(botocore_name, action), aws_sdk, pattern, serialized, state)


@dataclass
class Built:
    params: dict[str, Any]
    dynamic: set[Path_] = field(default_factory=set)


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def _dynamic_value(expr: str, shape: Shape) -> tuple[Any, bool]:
    """(value, is_dynamic) for a ``.$`` expression: a placeholder of the type the expression yields."""
    if expr.startswith("States.UUID("):
        return str(uuid.uuid4()), False  # a known length: the member's constraints apply
    if expr.startswith(_STRING_FNS) or expr.startswith("$$."):
        return (sample(shape) if shape.type_name == "string" else "x"), True
    if expr.startswith(_NUMBER_FNS):
        return 1, True
    if expr.startswith(_LIST_FNS):
        return ([sample(shape.member)] if shape.type_name == "list" else ["x"]), True
    return sample(shape), True  # a JSONPath into the state's data, or a function of unknown result type


def build_request(template: Any, shape: Shape, path: Path_, built: Built, serialized: set[str]) -> Any:
    """The request an ASL Parameters block stands for, member names as the API spells them."""
    kind = shape.type_name
    if kind == "structure" and isinstance(template, dict):
        by_asl_name = {_pascal(m): m for m in shape.members}
        out: dict[str, Any] = {}
        for key, value in template.items():
            is_path = key.endswith(".$")
            asl_name = key[:-2] if is_path else key
            member = by_asl_name.get(asl_name)
            if member is None:
                out[asl_name] = value  # the validator reports it as an unknown parameter
                continue
            mshape = shape.members[member]
            here = (*path, member)
            if is_path:
                out[member], dyn = _dynamic_value(value, mshape)
                if dyn:
                    built.dynamic.add(here)
            elif not path and asl_name in serialized and not isinstance(value, str):
                # JSON that Step Functions serializes; its ".$" fields are filled at run time
                text = json.dumps(value)
                out[member] = text.encode() if mshape.type_name == "blob" else text
                built.dynamic.add(here)
            else:
                out[member] = build_request(value, mshape, here, built, serialized)
        return out
    if kind == "map" and isinstance(template, dict):
        out = {}
        for key, value in template.items():
            here = (*path, key.removesuffix(".$"))
            if key.endswith(".$"):
                out[key[:-2]], dyn = _dynamic_value(value, shape.value)
                if dyn:
                    built.dynamic.add(here)
            else:
                out[key] = build_request(value, shape.value, here, built, serialized)
        return out
    if kind == "list" and isinstance(template, list):
        return [build_request(v, shape.member, (*path, i), built, serialized) for i, v in enumerate(template)]
    return template


def task_request(task: Task) -> Built:
    built = Built({})
    template = task.definition.get("Parameters") or {}
    if task.pattern == "waitForTaskToken":
        assert "$$.Task.Token" in json.dumps(template), f"{task.state}: a callback task must pass $$.Task.Token"
    built.params = build_request(template, task.operation.input_shape, (), built, task.serialized)
    return built


def result_paths(task: Task) -> list[str]:
    """First segments of the JSONPaths that read the task's result (ResultSelector; OutputPath with no ResultPath)."""
    texts = [v for k, v in (task.definition.get("ResultSelector") or {}).items() if k.endswith(".$")]
    if (
        "ResultSelector" not in task.definition
        and "ResultPath" not in task.definition
        and "OutputPath" in task.definition
    ):
        texts.append(task.definition["OutputPath"])
    return sorted({seg for text in texts for seg in re.findall(r"(?<!\$)\$\.([A-Za-z0-9_]+)", text)})


def all_tasks() -> list[Task]:
    return [
        resolve_task(machine, name, state)
        for machine, definition in state_machines().items()
        for name, state in task_states(definition)
    ]


TASKS = all_tasks()


def test_the_state_machines_have_sdk_integration_tasks() -> None:
    kinds = {(t.operation.service_model.service_name, t.operation.name) for t in TASKS}
    assert {
        ("s3", "GetObject"),
        ("sagemaker", "StartPipelineExecution"),
        ("lambda", "Invoke"),
        ("sns", "Publish"),
    } <= kinds


@pytest.mark.parametrize("task", TASKS, ids=lambda t: f"{t.machine}.{t.state}")
def test_task_parameters_are_valid_requests(task: Task) -> None:
    built = task_request(task)
    found = problems(built.params, task.operation.input_shape, built.dynamic)
    assert not found, f"{task.machine}.{task.state} -> {task.operation.name}: " + "; ".join(found)


def unknown_results(task: Task) -> list[str]:
    """Result fields a request-response task reads that its API does not return (PascalCase, as Step Functions
    hands them to the state)."""
    output = task.operation.output_shape
    names = {_pascal(m) for m in output.members} if output else set()
    if not task.aws_sdk and task.operation.service_model.service_name == "lambda":
        names |= LAMBDA_EXTRA_OUTPUT
    return [seg for seg in result_paths(task) if seg not in names]


@pytest.mark.parametrize("task", [t for t in TASKS if t.pattern is None], ids=lambda t: f"{t.machine}.{t.state}")
def test_task_results_are_read_by_names_the_api_returns(task: Task) -> None:
    unknown = unknown_results(task)
    assert not unknown, f"{task.machine}.{task.state} reads {unknown} from a {task.operation.name} result"


def test_a_broken_task_is_caught() -> None:
    read = next(t for t in TASKS if t.operation.name == "GetObject")
    start = next(t for t in TASKS if t.operation.name == "StartPipelineExecution")
    publish = next(t for t in TASKS if t.operation.name == "Publish")

    def broken(task: Task, edit: Any) -> list[str]:
        definition = copy.deepcopy(task.definition)
        edit(definition)
        bad = Task(task.machine, task.state, task.operation, task.aws_sdk, task.pattern, task.serialized, definition)
        built = task_request(bad)
        return problems(built.params, bad.operation.input_shape, built.dynamic)

    # a misspelled member, a camelCase member (AWS SDK integrations take PascalCase), a wrong type from an
    # intrinsic function, a name the service refuses, a missing required member
    assert "BucketName" in " ".join(
        broken(read, lambda d: d["Parameters"].update(BucketName=d["Parameters"].pop("Bucket")))
    )
    assert "pipelineName" in " ".join(
        broken(start, lambda d: d["Parameters"].update(pipelineName=d["Parameters"].pop("PipelineName")))
    )
    assert "MaxParallelExecutionSteps" in " ".join(
        broken(
            start,
            lambda d: d["Parameters"].update(
                {"ParallelismConfiguration": {"MaxParallelExecutionSteps.$": "States.Format('{}', $.x)"}}
            ),
        )
    )
    assert "PipelineName" in " ".join(broken(start, lambda d: d["Parameters"].update(PipelineName="not a name!")))
    assert "Message" in " ".join(
        broken(publish, lambda d: [d["Parameters"].pop(k, None) for k in ("Message", "Message.$")])
    )
    bad_read = copy.deepcopy(read)
    bad_read.definition["ResultSelector"] = {"latest.$": "States.StringToJson($.body)"}  # the API says Body
    assert not unknown_results(read) and unknown_results(bad_read) == ["body"]


# ------------------------------------------------------------------ StartPipelineExecution vs the pipeline
def pipeline_definition() -> dict[str, Any]:
    """template.yaml's TrainingPipeline body as a default (spot) stack deploys it."""
    template = load_yaml(TEMPLATE)
    body = template["Resources"]["TrainingPipeline"]["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    return json.loads(resolver(template).resolve(body))


def pipeline_parameter_problems(task: Task, definition: dict[str, Any]) -> list[str]:
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    out = []
    for entry in task.definition["Parameters"].get("PipelineParameters", []):
        name = entry["Name"]
        spec = declared.get(name)
        if spec is None:
            out.append(f"{name} is not a parameter of the pipeline ({sorted(declared)})")
            continue
        if "Value" not in entry:
            continue  # a JSONPath: its type is only known at run time
        value, kind = entry["Value"], spec.get("Type", "String")
        try:
            {"Integer": int, "Float": float, "String": str}.get(kind, str)(value)
        except ValueError:
            out.append(f"{name}={value!r} is not a {kind}")
        if kind == "Boolean" and value not in ("true", "false"):
            out.append(f"{name}={value!r} is not a Boolean (true|false)")
        if spec.get("EnumValues") and value not in spec["EnumValues"]:
            out.append(f"{name}={value!r} is not one of {spec['EnumValues']}")
    return out


def test_training_workflow_passes_parameters_the_pipeline_declares() -> None:
    start = next(t for t in TASKS if t.operation.name == "StartPipelineExecution")
    definition = pipeline_definition()
    assert not pipeline_parameter_problems(start, definition)
    bad = copy.deepcopy(start)
    bad.definition["Parameters"]["PipelineParameters"] += [
        {"Name": "NoSuchParameter", "Value": "1"},
        {"Name": "MinTestMap50", "Value": "high"},
    ]
    found = " ".join(pipeline_parameter_problems(bad, definition))
    assert "NoSuchParameter" in found and "'high' is not a Float" in found


# ------------------------------------------------------------------ the pipeline definition's steps
# A step's Arguments are the API request without the job name, which SageMaker Pipelines generates
STEP_APIS = {
    "Training": ("CreateTrainingJob", {"TrainingJobName": "pipelines-abc123-Train-XyZ"}),
    "Processing": ("CreateProcessingJob", {"ProcessingJobName": "pipelines-abc123-Prepare-XyZ"}),
    "RegisterModel": ("CreateModelPackage", {}),
}
NO_API_STEPS = {"Condition", "Fail"}


def pipeline_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        args = step.get("Arguments") or {}
        if step.get("Type") == "Condition":
            yield from pipeline_steps(args.get("IfSteps", []) + args.get("ElseSteps", []))


@dataclass
class PipelineContext:
    definition: dict[str, Any]
    dynamic: set[Path_] = field(default_factory=set)

    def parameter(self, name: str) -> Any:
        spec = next(p for p in self.definition["Parameters"] if p["Name"] == name)
        return spec["DefaultValue"]

    def step(self, name: str) -> dict[str, Any]:
        return next(s for s in pipeline_steps(self.definition["Steps"]) if s["Name"] == name)


_OUTPUT_REF = re.compile(r"^Steps\.([^.]+)\.ProcessingOutputConfig\.Outputs\['([^']+)'\]\.S3Output\.S3Uri$")


def resolve_pipeline(value: Any, shape: Shape, path: Path_, ctx: PipelineContext) -> Any:
    """Arguments with the pipeline's expressions evaluated: parameters at their defaults, Std:Join joined,
    another step's processing output as that step declares it; run-time properties as typed placeholders."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Get":
            if arg.startswith("Parameters."):
                return ctx.parameter(arg.split(".", 1)[1])
            if arg.startswith("Execution."):
                return "loupe-training" if arg.endswith("PipelineName") else "abc123def456"
            m = _OUTPUT_REF.match(arg)
            if m:
                outputs = ctx.step(m.group(1))["Arguments"]["ProcessingOutputConfig"]["Outputs"]
                uri = next(o for o in outputs if o["OutputName"] == m.group(2))["S3Output"]["S3Uri"]
                return resolve_pipeline(uri, shape, path, ctx)
            ctx.dynamic.add(path)
            return sample(shape)
        if key == "Std:Join":
            return arg["On"].join(str(resolve_pipeline(v, shape, path, ctx)) for v in arg["Values"])
        if key == "Std:JsonGet":
            ctx.dynamic.add(path)
            return sample(shape)
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {
            k: resolve_pipeline(v, shape.members[k], (*path, k), ctx) if k in shape.members else v
            for k, v in value.items()
        }
    if kind == "map" and isinstance(value, dict):
        return {k: resolve_pipeline(v, shape.value, (*path, k), ctx) for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [resolve_pipeline(v, shape.member, (*path, i), ctx) for i, v in enumerate(value)]
    return value


def step_problems(definition: dict[str, Any], step: dict[str, Any]) -> list[str]:
    api, generated = STEP_APIS[step["Type"]]
    shape = operation("sagemaker", api).input_shape
    ctx = PipelineContext(definition)
    request = {**generated, **resolve_pipeline(step["Arguments"], shape, (), ctx)}
    return problems(request, shape, ctx.dynamic)


PIPELINE_STEPS = list(pipeline_steps(pipeline_definition()["Steps"]))


def test_the_pipeline_has_training_and_processing_steps() -> None:
    types = {s["Type"] for s in PIPELINE_STEPS}
    assert {"Training", "Processing"} <= types
    unknown = types - set(STEP_APIS) - NO_API_STEPS
    assert not unknown, f"step types this test does not know the API of: {unknown}"


@pytest.mark.parametrize(
    "step", [s for s in PIPELINE_STEPS if s["Type"] in STEP_APIS], ids=lambda s: f"{s['Name']}-{s['Type']}"
)
def test_pipeline_step_arguments_are_valid_requests(step: dict[str, Any]) -> None:
    found = step_problems(pipeline_definition(), step)
    assert not found, f"pipeline step {step['Name']} -> {STEP_APIS[step['Type']][0]}: " + "; ".join(found)


def test_a_broken_pipeline_step_is_caught() -> None:
    definition = pipeline_definition()
    train = copy.deepcopy(next(s for s in pipeline_steps(definition["Steps"]) if s["Type"] == "Training"))
    train["Arguments"]["ResourceConfig"]["InstanceCount"] = "1"  # a string where the API takes an integer
    train["Arguments"]["OutputDataConfig"]["S3OutputPath"] = "loupe-artifacts/pipeline"  # not an S3 URI
    found = " ".join(step_problems(definition, train))
    assert "InstanceCount" in found and "S3OutputPath" in found
    proc = copy.deepcopy(next(s for s in pipeline_steps(definition["Steps"]) if s["Type"] == "Processing"))
    proc["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceType"] = "ml.nonexistent.large"
    assert "ml.nonexistent.large" in " ".join(step_problems(definition, proc))
    bad_default = copy.deepcopy(definition)
    for p in bad_default["Parameters"]:
        if p["Name"] == "TrainingMaxRunSeconds":
            p["DefaultValue"] = "an hour"  # an Integer parameter resolving to a string
    train = next(s for s in pipeline_steps(bad_default["Steps"]) if s["Type"] == "Training")
    assert "MaxRuntimeInSeconds" in " ".join(step_problems(bad_default, train))


# ------------------------------------------------------------------ requests built by the domain code
class Recorder:
    """A fake AWS client: records every call, answers from ``replies`` (a value or a function of the kwargs)."""

    def __init__(self, service: str, **replies: Any) -> None:
        self.service = service
        self.replies = replies
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(**kwargs: Any) -> Any:
            self.calls.append((method, copy.deepcopy(kwargs)))
            reply = self.replies.get(method, {})
            return copy.deepcopy(reply(**kwargs) if callable(reply) else reply)

        return call

    def problems(self) -> list[str]:
        found = []
        for method, kwargs in self.calls:
            op = operation(self.service, method)
            found += [f"{op.name}: {p}" for p in problems(kwargs, op.input_shape)]
        return found

    def requests(self, method: str) -> list[dict[str, Any]]:
        return [kwargs for m, kwargs in self.calls if m == method]


class FakeLedger:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}

    def put_job(self, name: str, **fields: Any) -> None:
        self.jobs[name] = fields


TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAb" + "x" * 600  # task tokens are long opaque strings
SHA = "ab" * 32


def _labeling_cfg(workteam: str) -> Any:
    from loupe.labeling.config import LabelingConfig

    return LabelingConfig(
        region=REGION,
        raw_bucket="loupe-raw",
        artifact_bucket="loupe-artifacts",
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/loupe-SageMakerExecutionRole",
        class_map={"0": "scratch"},
        workteam_arn=workteam,
        free_of_pii=True,  # the deployer's statement (InputFreeOfPersonalInformation): both classifiers
    )


WORKTEAMS = {
    "private": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/loupe-inspectors",
    "vendor": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/vendor-crowd/loupe-vendor",
}


def _labeling_run() -> dict[str, Any]:
    base = "s3://loupe-artifacts/labeling/c-20261124T080000-1a2b3c4d/"
    return {
        "claim_id": "c-20261124T080000-1a2b3c4d",
        "manifest": {
            "manifest_uri": base + "input.manifest",
            "categories_uri": base + "categories.json",
            "ui_uri": "s3://loupe-artifacts/labeling/ui/bounding-box.liquid.html",
            "verify_ui_uri": "s3://loupe-artifacts/labeling/ui/verify.liquid.html",
            "output_uri": base + "output/",
            "count": 1,
            "images": [SHA],
        },
        "collected": {"labeled": [SHA], "output_uri": base + "output/loupe/manifests/output/output.manifest"},
    }


def _labeling_requests(workteam: str) -> tuple[Recorder, Recorder]:
    from loupe.labeling.config import LABEL_ATTRIBUTE
    from loupe.labeling.labeling_job import create_labeling_job
    from loupe.labeling.verification import create_verification_job

    line = {"source-ref": "s3://loupe-raw/images/a.jpg", "loupe-sha256": SHA, LABEL_ATTRIBUTE: {}}
    body = json.dumps(line).encode()

    class Body:
        def read(self) -> bytes:
            return body

    s3 = Recorder("s3", get_object=lambda **_: {"Body": Body()})
    sagemaker = Recorder("sagemaker")
    cfg, run = _labeling_cfg(workteam), _labeling_run()
    create_labeling_job(sagemaker, FakeLedger(), cfg, run, TOKEN)
    create_verification_job(s3, sagemaker, FakeLedger(), cfg, run, TOKEN)
    return sagemaker, s3


@pytest.mark.parametrize("workforce", sorted(WORKTEAMS))
def test_labeling_jobs_are_valid_requests(workforce: str) -> None:
    sagemaker, s3 = _labeling_requests(WORKTEAMS[workforce])
    assert len(sagemaker.requests("create_labeling_job")) == 2  # the labeling job and the verification job
    assert not sagemaker.problems() and not s3.problems(), sagemaker.problems() + s3.problems()


def test_a_broken_labeling_job_is_caught() -> None:
    sagemaker, _ = _labeling_requests(WORKTEAMS["private"])
    request = copy.deepcopy(sagemaker.requests("create_labeling_job")[0])
    shape = operation("sagemaker", "CreateLabelingJob").input_shape
    del request["HumanTaskConfig"]["TaskTitle"]
    request["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] = 10  # above the API's maximum (9)
    request["LabelingJobName"] = "loupe_job"  # "_" is outside the name pattern
    found = " ".join(problems(request, shape))
    assert "TaskTitle" in found and "NumberOfHumanWorkersPerDataObject" in found and "LabelingJobName" in found


SPOOLER_RECIPE = {"ComponentDependencies": {"aws.greengrass.Nucleus": {"VersionRequirement": ">=2.11.0 <2.16.0"}}}
MODEL_RECIPE = {
    "ComponentConfiguration": {
        "DefaultConfiguration": {
            "modelVersion": "3",
            "modelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/loupe-models/3",
            "modelSha256": "ab" * 32,
            "modelInt8Sha256": "",
        }
    }
}


def _deployment_requests(current: dict[str, Any] | None) -> tuple[Recorder, Recorder]:
    from loupe import settings
    from loupe.deployment.document import start_deployment
    from loupe.deployment.packages import Package

    group_arn = f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/loupe-fleet"
    listing = {"deployments": [{"deploymentId": "d-old", "targetArn": group_arn, "isLatestForTarget": True}]}
    gg = Recorder(
        "greengrassv2",
        list_deployments=listing if current else {"deployments": []},
        get_deployment=current or {},
        create_deployment={"deploymentId": "d-new", "iotJobId": "j-1"},
        # the AWS-provided disk spooler, read when the target's deployment names a nucleus version
        list_component_versions={
            "componentVersions": [
                {
                    "componentName": "aws.greengrass.DiskSpooler",
                    "componentVersion": "1.0.6",
                    "arn": f"arn:aws:greengrass:{REGION}:aws:components:aws.greengrass.DiskSpooler:versions:1.0.6",
                }
            ]
        },
        get_component=lambda arn, **_: {
            "recipeOutputFormat": "JSON",
            "recipe": json.dumps(MODEL_RECIPE if ":com.loupe.model:" in arn else SPOOLER_RECIPE).encode(),
        },
    )
    iot = Recorder("iot", describe_thing_group={"thingGroupArn": group_arn})
    cfg = settings.from_mapping(
        {
            "ARTIFACT_BUCKET": "loupe-artifacts",
            "RAW_BUCKET": "loupe-raw",
            "THING_GROUP_NAME": "loupe-fleet",
            "DEPLOYMENTS_TABLE": "loupe-deployments",
        }
    )
    package = Package(
        arn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/loupe-models/3",
        group="loupe-models",
        version=3,
        status="Approved",
        model_data_url="s3://loupe-artifacts/pipeline/model.tar.gz",
        digests={"package_sha256": SHA},
    )
    request = {
        "package": package.to_json(),
        "model": {
            "name": "com.loupe.model",
            "version": "1.3.0",
            "arn": f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:com.loupe.model:versions:1.3.0",
        },
        "inference": {"name": "com.loupe.inference", "version": "1.0.2"},
        "run_id": "deploy-v3-1a2b3c",
        "mode": "approved",
    }
    start_deployment(gg, iot, request, cfg, timeout_seconds=1800)
    return gg, iot


CURRENT = {
    "deploymentId": "d-old",
    "components": {
        "aws.greengrass.Nucleus": {"componentVersion": "2.14.0", "configurationUpdate": {"merge": '{"a": 1}'}},
        "com.loupe.model": {"componentVersion": "1.2.0"},
        "com.loupe.inference": {"componentVersion": "1.0.1", "runWith": {"posixUser": "ggc_user"}},
    },
}


@pytest.mark.parametrize("current", [None, CURRENT], ids=["first", "revision"])
def test_deployments_are_valid_requests(current: dict[str, Any] | None) -> None:
    gg, iot = _deployment_requests(current)
    assert len(gg.requests("create_deployment")) == 1
    if current:  # the revision turns on the nucleus' disk spooler at the nucleus version it already names
        sent = gg.requests("create_deployment")[0]["components"]
        assert sent["aws.greengrass.DiskSpooler"] == {"componentVersion": "1.0.6"}
        assert sent["aws.greengrass.Nucleus"]["componentVersion"] == "2.14.0"
    assert not gg.problems() and not iot.problems(), gg.problems() + iot.problems()


def test_a_broken_deployment_is_caught() -> None:
    gg, _ = _deployment_requests(None)
    request = copy.deepcopy(gg.requests("create_deployment")[0])
    request["deploymentPolicies"]["failureHandlingPolicy"] = "UNDO"  # not an enum value
    job = request["iotJobConfiguration"]
    job["jobExecutionsRolloutConfig"]["exponentialRate"]["incrementFactor"] = 7.5  # above 5
    job["timeoutConfig"]["inProgressTimeoutInMinutes"] = "30"  # a string
    found = " ".join(problems(request, operation("greengrassv2", "CreateDeployment").input_shape))
    assert "UNDO" in found and "incrementFactor" in found and "inProgressTimeoutInMinutes" in found


def _component_requests() -> tuple[Recorder, Recorder]:
    from loupe import greengrass

    def created(inlineRecipe: bytes, **_: Any) -> dict[str, Any]:  # noqa: N803 - the API's name
        recipe = json.loads(inlineRecipe)
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        arn = f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:{name}:versions:{version}"
        return {"arn": arn, "status": {"componentState": "DEPLOYABLE"}}

    gg = Recorder("greengrassv2", list_components={"components": []}, create_component_version=created)
    s3 = Recorder("s3")
    greengrass.publish_inference(gg, s3, "loupe-artifacts", REPO_ROOT / "edge_component")
    return gg, s3


def test_component_versions_are_valid_requests() -> None:
    gg, s3 = _component_requests()
    (request,) = gg.requests("create_component_version")
    assert json.loads(request["inlineRecipe"])["ComponentName"] == "com.loupe.inference"
    assert not gg.problems() and not s3.problems(), gg.problems() + s3.problems()
    broken = {**request, "inlineRecipe": json.loads(request["inlineRecipe"]), "tags": {"k": 1}}
    found = " ".join(problems(broken, operation("greengrassv2", "CreateComponentVersion").input_shape))
    assert "inlineRecipe" in found and "tags" in found


def test_training_handoff_is_a_valid_start_execution() -> None:
    from loupe.labeling.dataset import start_training

    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:loupe-TrainingStateMachine"
    sfn = Recorder("stepfunctions", start_execution=lambda **kw: {"executionArn": f"{machine}:{kw['name']}"})
    run = {"dataset": {"version": 12, "uri": "s3://loupe-artifacts/datasets/v12/"}}
    start_training(sfn, machine, run, started_by=f"{machine.replace('stateMachine', 'execution')}:run-1")
    (request,) = sfn.requests("start_execution")
    assert json.loads(request["input"])["dataset_uri"] == run["dataset"]["uri"]
    assert not sfn.problems(), sfn.problems()
    shape = operation("stepfunctions", "StartExecution").input_shape
    assert problems({**request, "name": "dataset-v12-" + "x" * 80}, shape)  # names are at most 80 characters
