"""The SageMaker Pipelines interpreter of the local AWS is pure: a definition, parameters and step results in, what
runs next out (no S3, no processes, no files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loupe_local.standins.pipelines import interpreter
from loupe_local.standins.pipelines.interpreter import Execution, StepFailed

GATE = {
    "Conditions": [
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": {"Std:JsonGet": {"Path": "map50", "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.R"}}},
            "RightValue": {"Get": "Parameters.MinMap"},
        }
    ],
    "IfSteps": [{"Name": "Register", "Type": "RegisterModel"}],
    "ElseSteps": [{"Name": "Refuse", "Type": "Fail"}],
}
DEFINITION = {
    "Parameters": [{"Name": "MinMap", "Type": "Float", "DefaultValue": 0.5}, {"Name": "Epochs", "Type": "Integer"}],
    "Steps": [
        {"Name": "Gate", "Type": "Condition", "Arguments": GATE},
        {"Name": "Evaluate", "Type": "Processing", "Arguments": {"M": {"Get": "Steps.Train.ModelArtifacts"}}},
        {"Name": "Train", "Type": "Training", "Arguments": {}, "DependsOn": ["Prepare"]},
        {"Name": "Prepare", "Type": "Processing", "Arguments": {}},
    ],
}


def _execution(**given: str) -> Execution:
    params = interpreter.execution_parameters(DEFINITION, [{"Name": k, "Value": v} for k, v in given.items()])
    return Execution("arn:x/execution/e1", "p", "arn:p", "e1", "", params, DEFINITION, Path("/nonexistent"))


def test_parameters_are_typed_and_unknown_ones_refused() -> None:
    assert _execution(MinMap="0.7", Epochs="3").parameters == {"MinMap": 0.7, "Epochs": 3}
    with pytest.raises(ValueError, match="Unknown parameter 'Nope'"):
        _execution(Nope="1")


def test_steps_run_after_the_steps_they_reference_or_depend_on() -> None:
    order = [s["Name"] for s in interpreter.ordered_steps(DEFINITION["Steps"])]
    assert order == ["Prepare", "Train", "Evaluate", "Gate"]


def test_a_condition_reads_the_property_file_document_and_picks_the_branch() -> None:
    ex = _execution()
    with pytest.raises(StepFailed, match="property file Evaluate.R is not available"):
        interpreter.condition_branch(ex, GATE)
    ex.property_files["Evaluate.R"] = {"map50": 0.6}
    assert interpreter.condition_branch(ex, GATE) == (True, GATE["IfSteps"])
    ex.parameters["MinMap"] = 0.9
    assert interpreter.condition_branch(ex, GATE) == (False, GATE["ElseSteps"])


def test_retry_decisions_follow_the_policy() -> None:
    policies = [
        {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 2}
    ]
    capacity = StepFailed("no capacity", "SageMaker.CAPACITY_ERROR")
    assert interpreter.retry_delay(policies, capacity, {}, 0.0) == (0, 2.0)
    assert interpreter.retry_delay(policies, capacity, {0: 1}, 0.0) == (0, 6.0)
    assert interpreter.retry_delay(policies, capacity, {0: 2}, 0.0) is None  # MaxAttempts spent
    assert interpreter.retry_delay(policies, StepFailed("AlgorithmError"), {}, 0.0) is None
    expiring = [{"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "IntervalSeconds": 2, "ExpireAfterMin": 1}]
    assert interpreter.retry_delay(expiring, capacity, {}, 57.0) == (0, 2.0)  # retried 59 s after the first try
    assert interpreter.retry_delay(expiring, capacity, {}, 59.0) is None  # would be 61 s: past ExpireAfterMin
