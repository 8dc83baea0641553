"""A stack deployed with TrainingUseSpot=false: its provisioned pipeline asks for an on-demand job SageMaker accepts.

The local AWS is provisioned from template.yaml in its own process (moto's backends are per process, and the
session's ``local_aws`` is a spot stack): the same provisioner, Fn::Sub and Fn::If as ``loupe local up``. Nothing
is trained: the stored definition's Train request is checked with the stand-in's CreateTrainingJob rules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loupe_local.standins.pipelines import interpreter
from loupe_local.standins.pipelines.interpreter import Execution, validate_training_request

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
MAX_RUNTIME_LIMIT = 28 * 24 * 3600  # API_StoppingCondition: "The maximum value is 28 days."

_PROBE = r"""
import json, sys
from pathlib import Path
from botocore.exceptions import ClientError
from loupe_local.host.runtime import LocalRuntime

runtime = LocalRuntime(state_dir=Path(sys.argv[1]), mqtt=False, parameters={"TrainingUseSpot": "false"})
runtime.start()
try:
    sm = runtime.client("sagemaker")
    name = runtime.physical("TrainingPipeline")
    machine = runtime.client("stepfunctions").describe_state_machine(
        stateMachineArn=runtime.arn("TrainingStateMachine")
    )
    unknown = f"arn:aws:sagemaker:{runtime.region}:123456789012:pipeline/{name}/execution/nobodystartedthis"
    errors = {}
    for call in ("describe_pipeline_execution", "list_pipeline_execution_steps", "stop_pipeline_execution"):
        try:
            getattr(sm, call)(PipelineExecutionArn=unknown)
            errors[call] = None
        except ClientError as exc:
            errors[call] = {
                "code": exc.response["Error"]["Code"],
                "status": exc.response["ResponseMetadata"]["HTTPStatusCode"],
                "message": exc.response["Error"]["Message"],
            }
    result = {
        "stack_parameter": runtime.parameter_values["TrainingUseSpot"],
        "definition": sm.describe_pipeline(PipelineName=name)["PipelineDefinition"],
        "workflow": machine["definition"],
        "unknown_arn": unknown,
        "errors": errors,
    }
finally:
    runtime.stop()
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def on_demand_stack(tmp_path_factory) -> dict:
    state = tmp_path_factory.mktemp("on-demand-stack")
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(state)], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, f"provisioning failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def _train_request(definition: dict, **parameters) -> dict:
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    execution = Execution(
        arn="arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training/execution/probe",
        pipeline_name="loupe-training",
        pipeline_arn="arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training",
        display_name="probe",
        description="",
        parameters={**defaults, **parameters},
        definition=definition,
        root=Path("/nonexistent"),
    )
    train = next(s for s in definition["Steps"] if s["Type"] == "Training")
    args = {k: v for k, v in train["Arguments"].items() if k != "InputDataConfig"}  # step properties left out
    return interpreter.resolve(execution, args)


@pytest.mark.parametrize("max_runtime", [1, 7200, MAX_RUNTIME_LIMIT])
def test_the_provisioned_pipeline_asks_for_a_valid_on_demand_job(on_demand_stack, max_runtime):
    assert on_demand_stack["stack_parameter"] == "false"
    definition = json.loads(on_demand_stack["definition"])
    request = _train_request(definition, TrainingMaxRunSeconds=max_runtime)
    assert request["EnableManagedSpotTraining"] is False
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": max_runtime}
    validate_training_request(request)  # raises StepFailed with SageMaker's message when refused


def test_the_training_workflow_passes_only_parameters_the_pipeline_declares(on_demand_stack):
    declared = {p["Name"] for p in json.loads(on_demand_stack["definition"])["Parameters"]}
    states = json.loads(on_demand_stack["workflow"])["States"]
    starts = [
        s["Parameters"] for s in states.values() if s.get("Resource", "").endswith("sagemaker:startPipelineExecution")
    ]
    assert starts, "the training workflow no longer starts the pipeline"
    passed = {p["Name"] for start in starts for p in start["PipelineParameters"]}
    assert "TrainingUseSpot" not in declared | passed
    assert passed <= declared, f"StartPipelineExecution would refuse {passed - declared}"


def test_an_execution_nobody_started_is_resource_not_found(on_demand_stack):
    for call, err in on_demand_stack["errors"].items():
        assert err is not None, f"{call} answered for an execution nobody started"
        assert (err["code"], err["status"]) == ("ResourceNotFound", 400), f"{call}: {err}"
        assert on_demand_stack["unknown_arn"] in err["message"]
