"""Who decides a registered package's approval status: the stack (AutoApprove), never a pipeline caller.

StartPipelineExecution lets its caller set every parameter of the pipeline, so a ``ModelApprovalStatus`` parameter let
anyone allowed to start the pipeline register a package Approved, and so deploy it, on a stack deployed with
AutoApprove=false. The status is now a deploy-time value of the definition (Fn::If on AutoApproveOn), and SageMaker
(and the local stand-in) refuses a parameter the definition does not declare.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from loupe_local.standins.pipelines import interpreter
from loupe_local.standins.pipelines.interpreter import Execution
from loupe_local.template import Resolver, load_sam_app

REPO = Path(__file__).resolve().parents[3]


@functools.cache
def _deployed(auto_approve: str) -> dict:
    """The pipeline definition a stack deployed with this AutoApprove creates (intrinsics as the local provisioner)."""
    app = load_sam_app(REPO / "template.yaml")
    resolver = Resolver(
        app.transformed,
        {"AutoApprove": auto_approve},
        "loupe",
        "us-east-1",
        ref=lambda logical: f"loupe-{logical.lower()}",
        get_att=lambda logical, attr: f"arn:aws:iam::123456789012:role/loupe-{logical}",
    )
    body = app.transformed["Resources"]["TrainingPipeline"]["Properties"]["PipelineDefinition"]
    return json.loads(resolver.resolve(body["PipelineDefinitionBody"]))


def _register_request(definition: dict, given: list[dict]) -> dict:
    """What the Register step sends CreateModelPackage for an execution started with ``given`` parameters."""
    execution = Execution(
        arn="arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training/execution/e1",
        pipeline_name="loupe-training",
        pipeline_arn="arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training",
        display_name="e1",
        description="",
        parameters=interpreter.execution_parameters(definition, given),
        definition=definition,
        root=Path("/nonexistent"),
    )
    gate = next(s for s in definition["Steps"] if s["Type"] == "Condition")
    (register,) = gate["Arguments"]["IfSteps"]
    args = {k: v for k, v in register["Arguments"].items() if k == "ModelApprovalStatus"}
    return interpreter.register_request(interpreter.resolve(execution, args))


@pytest.mark.parametrize("auto_approve, status", [("false", "PendingManualApproval"), ("true", "Approved")])
def test_the_stack_decides_the_registration_status(auto_approve: str, status: str) -> None:
    assert _register_request(_deployed(auto_approve), [])["ModelApprovalStatus"] == status


@pytest.mark.parametrize("auto_approve", ["false", "true"])
def test_a_model_the_gate_refused_waits_for_a_person_whatever_auto_approve_says(auto_approve: str) -> None:
    gate = next(s for s in _deployed(auto_approve)["Steps"] if s["Type"] == "Condition")
    (refused,) = [s for s in gate["Arguments"]["ElseSteps"] if s["Type"] == "RegisterModel"]
    assert refused["Arguments"]["ModelApprovalStatus"] == "PendingManualApproval"


def test_a_caller_cannot_ask_for_approved_on_a_stack_without_auto_approve() -> None:
    definition = _deployed("false")
    asked = [{"Name": "ModelApprovalStatus", "Value": "Approved"}]
    assert interpreter.parameter_problem(definition, asked) == "Unknown parameter 'ModelApprovalStatus'"
    with pytest.raises(ValueError, match="Unknown parameter 'ModelApprovalStatus'"):
        _register_request(definition, asked)


def test_the_training_workflow_no_longer_passes_a_status() -> None:
    asl = json.loads((REPO / "statemachines" / "training.asl.json").read_text())
    start = asl["States"]["StartPipeline"]["Parameters"]["PipelineParameters"]
    assert "ModelApprovalStatus" not in {p["Name"] for p in start}


@pytest.mark.parametrize(
    "given, problem",
    [
        ([{"Name": "MinTestMap50", "Value": ""}], 'Parameter MinTestMap50 value "" is too short'),
        ([{"Name": "MinTestMap50", "Value": "high"}], "Unexpected type for parameter 'MinTestMap50'"),
        ([{"Name": "Epochs", "Value": "3"}], None),
    ],
)
def test_parameters_are_checked_as_sagemaker_checks_them(given: list[dict], problem: str | None) -> None:
    found = interpreter.parameter_problem(_deployed("false"), given)
    assert found == problem if problem is None else (found or "").startswith(problem)
