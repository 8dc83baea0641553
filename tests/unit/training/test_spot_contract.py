"""Managed spot training contract of the pipeline definition, checked with the local AWS's own CreateTrainingJob rules.

- spot is a deploy-time choice (TrainingUseSpot -> Condition UseSpotTraining): with it on, MaxWaitTimeInSeconds >=
  MaxRuntimeInSeconds for every TrainingMaxRuntimeSeconds the stack accepts; with it off, no MaxWaitTimeInSeconds;
- retry policies for the pipeline's own faults and the jobs' capacity / internal / resource-limit errors;
- a checkpoint prefix per pipeline execution.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pytest
import yaml

from loupe_local.standins.pipelines import interpreter
from loupe_local.standins.pipelines.interpreter import Execution, StepFailed, StepRecord, validate_training_request
from loupe_local.standins.pipelines.service import PipelineExecutions
from loupe_local.template import Resolver, load_sam_app
from loupe_training.train import checkpoint_source_problem

REPO = Path(__file__).resolve().parents[3]
JOB_TYPES = {"SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT"}
STEP_TYPES = {"Step.SERVICE_FAULT", "Step.THROTTLING"}
MAX_RUNTIME_LIMIT = 28 * 24 * 3600  # API_StoppingCondition: "The maximum value is 28 days."


def _template_parameters() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((REPO / "template.yaml").read_text(), Loader=Loader)["Parameters"]  # noqa: S506


def _execution(execution_id: str, definition: dict | None = None, **parameters) -> Execution:
    definition = definition or DEFINITION
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    unknown = set(parameters) - set(defaults)
    assert not unknown, f"not parameters of the pipeline: {unknown}"  # StartPipelineExecution would refuse them
    return Execution(
        arn=f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training/execution/{execution_id}",
        pipeline_name="loupe-training",
        pipeline_arn="arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training",
        display_name=execution_id,
        description="",
        parameters={**defaults, **parameters},
        definition=definition,
        root=Path("/nonexistent"),
    )


@functools.cache
def _sam_app():
    return load_sam_app(REPO / "template.yaml")


def _stack_resolver(**stack_parameters: str) -> Resolver:
    """Intrinsics evaluated as the local provisioner does (same Resolver, SAM-transformed template)."""
    return Resolver(
        _sam_app().transformed,
        stack_parameters,
        "loupe",
        "us-east-1",
        ref=lambda logical: f"loupe-{logical.lower()}",
        get_att=lambda logical, attr: f"arn:aws:iam::123456789012:role/loupe-{logical}",
    )


def _pipeline_body() -> dict:
    resource = _sam_app().transformed["Resources"]["TrainingPipeline"]
    return resource["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]


@functools.cache
def _deployed_text(training_use_spot: str) -> str:
    return _stack_resolver(TrainingUseSpot=training_use_spot).resolve(_pipeline_body())


def _deployed(training_use_spot: str) -> dict:
    """The pipeline definition a stack deployed with this TrainingUseSpot creates."""
    return json.loads(_deployed_text(training_use_spot))


DEFINITION = _deployed("true")  # a spot (default) stack's definition, from template.yaml's TrainingPipeline
STEPS = {s["Name"]: s for s in DEFINITION["Steps"]}


def _train_request(definition: dict | None = None, **parameters) -> dict:
    """The Train step's CreateTrainingJob arguments as the pipeline resolves them (step properties left out)."""
    definition = definition or DEFINITION
    train = next(s for s in definition["Steps"] if s["Name"] == "Train")
    args = {k: v for k, v in train["Arguments"].items() if k != "InputDataConfig"}
    return interpreter.resolve(_execution("e1", definition, **parameters), args)


def test_stack_bounds_max_runtime_to_what_sagemaker_accepts():
    param = _template_parameters()["TrainingMaxRuntimeSeconds"]
    assert param["Type"] == "Number"
    assert "MinValue" in param and "MaxValue" in param, "CloudFormation must refuse what SageMaker would"
    assert param["MinValue"] >= 1
    assert param["MaxValue"] <= MAX_RUNTIME_LIMIT


@pytest.mark.parametrize("spot", ["true", "false"])
@pytest.mark.parametrize("where", ["min", "default", "half", "max"])
def test_request_is_valid_for_both_spot_choices_and_every_max_runtime_the_stack_accepts(spot, where):
    param = _template_parameters()["TrainingMaxRuntimeSeconds"]
    # an unbounded parameter accepts whatever SageMaker takes
    lo, hi = int(param.get("MinValue", 1)), int(param.get("MaxValue", MAX_RUNTIME_LIMIT))
    value = {"min": lo, "default": int(param["Default"]), "half": (lo + hi) // 2, "max": hi}[where]
    request = _train_request(_deployed(spot), TrainingMaxRunSeconds=value)
    assert request["EnableManagedSpotTraining"] is (spot == "true")
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == value
    validate_training_request(request)  # raises StepFailed with SageMaker's message when refused
    if spot == "true":
        assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] >= value
    else:
        assert "MaxWaitTimeInSeconds" not in request["StoppingCondition"]


def test_spot_choice_changes_only_the_two_spot_fields():
    on, off = _deployed("true"), _deployed("false")
    assert on == json.loads(_stack_resolver().resolve(_pipeline_body()))  # a default stack is a spot stack
    on_train = next(s for s in on["Steps"] if s["Name"] == "Train")["Arguments"]
    on_train["EnableManagedSpotTraining"] = False
    del on_train["StoppingCondition"]["MaxWaitTimeInSeconds"]
    assert on == off


def test_spot_is_a_deploy_time_choice_not_a_pipeline_parameter():
    assert _template_parameters()["TrainingUseSpot"]["AllowedValues"] == ["true", "false"]
    assert _stack_resolver(TrainingUseSpot="true").condition("UseSpotTraining") is True
    assert _stack_resolver(TrainingUseSpot="false").condition("UseSpotTraining") is False
    for spot in ("true", "false"):
        assert "TrainingUseSpot" not in {p["Name"] for p in _deployed(spot)["Parameters"]}
        assert "Parameters.TrainingUseSpot" not in _deployed_text(spot)
    # the training workflow cannot pass it any more (StartPipelineExecution refuses an undeclared parameter)
    asl = (REPO / "statemachines" / "training.asl.json").read_text()
    assert "TrainingUseSpot" not in asl
    machine = _sam_app().transformed["Resources"]["TrainingStateMachine"]["Properties"]
    assert "TrainingUseSpot" not in machine.get("DefinitionSubstitutions", {})


@pytest.mark.parametrize("spot", ["true", "false"])
def test_the_standins_fallback_definition_is_what_the_template_deploys(spot):
    """ensure_pipeline's fallback (no TrainingPipeline provisioned) creates what the template deploys for the stack."""
    from types import SimpleNamespace

    from loupe_local.standins.pipelines.service import template_definition

    resolver = _stack_resolver(TrainingUseSpot=spot)
    role_arn = resolver._get_att("SageMakerExecutionRole", "Arn")
    runtime = SimpleNamespace(
        root=REPO,
        region="us-east-1",
        stack_name="loupe",
        parameter_values=resolver.parameters,
        physical=resolver.ref,
        resources={"SageMakerExecutionRole": SimpleNamespace(attrs={"Arn": role_arn})},
    )
    assert json.loads(template_definition(runtime)) == _deployed(spot)


def test_max_wait_sent_without_spot_is_refused():
    """The old behaviour (spot a pipeline parameter, MaxWait always sent) gives a request SageMaker refuses."""
    old = _deployed("true")
    train = next(s for s in old["Steps"] if s["Name"] == "Train")["Arguments"]
    train["EnableManagedSpotTraining"] = {"Get": "Parameters.TrainingUseSpot"}
    old["Parameters"].append({"Name": "TrainingUseSpot", "Type": "Boolean", "DefaultValue": True})
    request = _train_request(old, TrainingUseSpot=False)
    assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] == MAX_RUNTIME_LIMIT
    with pytest.raises(StepFailed, match="It is only supported when EnableManagedSpotTraining is set to true"):
        validate_training_request(request)
    # and the template body with only the flag switched off (MaxWait member kept) is refused the same way
    text = _stack_resolver(TrainingUseSpot="false").sub(
        _pipeline_body()["Fn::Sub"][0],
        {"SpotFlag": "false", "SpotMaxWait": f', "MaxWaitTimeInSeconds": {MAX_RUNTIME_LIMIT}'},
    )
    with pytest.raises(StepFailed, match="Invalid MaxWaitTimeInSeconds"):
        validate_training_request(_train_request(json.loads(text)))


def test_max_wait_is_not_a_pipeline_parameter_anyone_could_set_below_max_runtime():
    stopping = STEPS["Train"]["Arguments"]["StoppingCondition"]
    assert isinstance(stopping["MaxWaitTimeInSeconds"], int)
    assert stopping["MaxWaitTimeInSeconds"] >= int(_template_parameters()["TrainingMaxRuntimeSeconds"]["MaxValue"])
    assert stopping["MaxRuntimeInSeconds"] == {"Get": "Parameters.TrainingMaxRunSeconds"}


def test_the_local_createtrainingjob_refuses_what_sagemaker_refuses():
    base = {"EnableManagedSpotTraining": True, "StoppingCondition": {"MaxRuntimeInSeconds": 7200}}
    validate_training_request(base)  # no MaxWait given: nothing to compare
    too_short = {**base, "StoppingCondition": {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 3600}}
    with pytest.raises(StepFailed) as refused:
        validate_training_request(too_short)
    reason = str(refused.value)
    assert reason.startswith("ClientError: Failed to invoke sagemaker:CreateTrainingJob. Error Details: ")
    assert "Invalid MaxWaitTimeInSeconds" in reason and "MaxRuntimeInSeconds" in reason
    assert refused.value.exception_type is None  # a refused request is not retried
    validate_training_request(
        {**too_short, "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 3600}}
    )
    on_demand = {
        "EnableManagedSpotTraining": False,
        "StoppingCondition": {"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 60},
    }
    with pytest.raises(StepFailed, match="It is only supported when EnableManagedSpotTraining is set to true"):
        validate_training_request(on_demand)


def test_checkpoint_prefix_is_per_execution():
    config = STEPS["Train"]["Arguments"]["CheckpointConfig"]
    assert config["LocalPath"] == "/opt/ml/checkpoints"
    assert "Execution.PipelineExecutionId" in json.dumps(config["S3Uri"])
    first = interpreter.resolve(_execution("aaaa1111"), config)["S3Uri"]
    second = interpreter.resolve(_execution("bbbb2222"), config)["S3Uri"]
    assert first != second
    assert first.endswith("/aaaa1111") and second.endswith("/bbbb2222")
    assert not first.startswith(second) and not second.startswith(first)


def test_the_job_is_told_its_checkpoint_prefix_and_execution_and_they_agree():
    args = STEPS["Train"]["Arguments"]
    assert args["Environment"]["LOUPE_CHECKPOINT_S3_URI"] == args["CheckpointConfig"]["S3Uri"]
    env = interpreter.resolve(_execution("aaaa1111"), args["Environment"])
    assert env["LOUPE_PIPELINE_EXECUTION_ID"] == "aaaa1111"
    assert checkpoint_source_problem(env["LOUPE_CHECKPOINT_S3_URI"], env["LOUPE_PIPELINE_EXECUTION_ID"]) == ""


@pytest.mark.parametrize("step", ["Prepare", "Train", "Evaluate"])
def test_job_steps_retry_capacity_internal_and_limit_errors(step):
    policies = STEPS[step].get("RetryPolicies", [])
    types = {t for p in policies for t in p["ExceptionType"]}
    assert types >= JOB_TYPES and types >= STEP_TYPES
    for policy in policies:  # the limits of pipelines-retry-policy.html (one of MaxAttempts / ExpireAfterMin)
        assert ("MaxAttempts" in policy) != ("ExpireAfterMin" in policy)
        assert 1 <= policy.get("MaxAttempts", 1) <= 20
        assert 0 <= policy.get("ExpireAfterMin", 0) <= 14400
        assert 0 <= policy["IntervalSeconds"] <= 43200
        assert policy["BackoffRate"] >= 0


def test_register_step_retries_service_faults():
    (register,) = STEPS["Gate"]["Arguments"]["IfSteps"]
    types = {t for p in register.get("RetryPolicies", []) for t in p["ExceptionType"]}
    assert types >= STEP_TYPES and not types & JOB_TYPES  # RegisterModel starts no job


# ---------------------------------------------------------------------- the local runner honours the policies
def _policy_step(**policy) -> dict:
    return {
        "Name": "Train",
        "Type": "Training",
        "RetryPolicies": [
            {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "IntervalSeconds": 0, "BackoffRate": 2.0, **policy}
        ],
    }


def test_local_runner_retries_a_capacity_error_as_its_policy_allows():
    runner = PipelineExecutions()
    runner.inject_fault("Train", "SageMaker.CAPACITY_ERROR", "InsufficientCapacityError", times=2)
    ran: list[float] = []
    record = StepRecord("Train", "Training")
    runner._with_retries(_execution("r1"), _policy_step(MaxAttempts=3), record, lambda *_: ran.append(time.time()))
    assert len(ran) == 1 and record.attempts == 3
    assert record.api()["AttemptCount"] == 3


def test_local_runner_gives_up_after_max_attempts_and_never_retries_other_errors():
    runner = PipelineExecutions()
    runner.inject_fault("Train", "SageMaker.CAPACITY_ERROR", "InsufficientCapacityError", times=3)
    record = StepRecord("Train", "Training")
    with pytest.raises(StepFailed, match="InsufficientCapacityError"):
        runner._with_retries(_execution("r2"), _policy_step(MaxAttempts=2), record, lambda *_: None)
    assert record.attempts == 3  # the first attempt and 2 retries

    runner = PipelineExecutions()
    runner.inject_fault("Train", "SageMaker.RESOURCE_LIMIT", "ResourceLimitExceeded")  # not in this policy
    record = StepRecord("Train", "Training")
    with pytest.raises(StepFailed, match="ResourceLimitExceeded"):
        runner._with_retries(_execution("r3"), _policy_step(MaxAttempts=5), record, lambda *_: None)
    assert record.attempts == 1

    def algorithm_error(*_):
        raise StepFailed("AlgorithmError: boom")

    record = StepRecord("Train", "Training")
    with pytest.raises(StepFailed, match="AlgorithmError"):
        PipelineExecutions()._with_retries(_execution("r4"), _policy_step(MaxAttempts=5), record, algorithm_error)
    assert record.attempts == 1
