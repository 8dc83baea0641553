"""functions/deployment_tasks: the edge deployment state machine's task envelope (``{"task", "input"}``) through
the real ``lambda_handler``, the run's state merged with the step's result; and every Lambda task of
statemachines/edge_deployment.asl.json sends that envelope with a task the worker knows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from loupe.deployment import workflow
from loupe.tasks import TaskEnvelope, TaskError

REPO = Path(__file__).resolve().parents[3]
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "loupe",
    "ARTIFACT_BUCKET": "loupe-artifacts",
    "RAW_BUCKET": "loupe-raw",
    "DEPLOYMENTS_TABLE": "loupe-deployments",
    "THING_GROUP_NAME": "loupe-edge-fleet",
}
CONTEXT = SimpleNamespace(
    function_name="loupe-deployment-tasks",
    memory_limit_in_mb=1024,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:loupe-deployment-tasks",
    aws_request_id="00000000-0000-0000-0000-000000000000",
    get_remaining_time_in_millis=lambda: 60_000,
)


class FakeSageMaker:
    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803 - the API's name
        return {
            "ModelPackageArn": ModelPackageName,
            "ModelPackageGroupName": "loupe-models",
            "ModelPackageVersion": 3,
            "ModelApprovalStatus": "Approved",
            "InferenceSpecification": {"Containers": [{"ModelDataUrl": "s3://loupe-artifacts/models/3/model.tar.gz"}]},
            "CustomerMetadataProperties": {"package_sha256": "ab" * 32, "dataset_version": "2"},
        }


class FakeIot:
    def __init__(self) -> None:
        self.groups: list[str] = []

    def list_things_in_thing_group(self, thingGroupName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.groups.append(thingGroupName)
        return {"things": ["line-2-cam", "line-1-cam"]}


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(
        "test_fn_deployment_tasks", REPO / "functions" / "deployment_tasks" / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample() -> dict[str, Any]:
    return json.loads((REPO / "events" / "deployment_tasks.json").read_text())


def test_the_sample_task_returns_the_run_state_with_its_result_merged(handler: ModuleType, monkeypatch) -> None:
    iot = FakeIot()
    monkeypatch.setattr(handler, "aws", SimpleNamespace(settings=handler.SETTINGS, sagemaker=FakeSageMaker(), iot=iot))
    event = sample()
    state = handler.lambda_handler(event, CONTEXT)
    assert {k: state[k] for k in event["input"]} == event["input"]  # the run's state goes on
    assert state["status"] == "ready" and state["package"]["version"] == 3
    assert state["devices"] == ["line-1-cam", "line-2-cam"] and iot.groups == [ENV["THING_GROUP_NAME"]]


def test_a_wiring_mistake_fails_loudly(handler: ModuleType) -> None:
    with pytest.raises(TaskError, match="unknown task 'deploy_everything'"):
        handler.lambda_handler({"task": "deploy_everything", "input": {}}, CONTEXT)
    with pytest.raises(ValidationError, match="task"):
        handler.lambda_handler({"action": "resolve", "state": sample()["input"]}, CONTEXT)  # the old envelope


def test_every_lambda_task_of_the_workflow_sends_the_task_envelope() -> None:
    definition = json.loads((REPO / "statemachines" / "edge_deployment.asl.json").read_text())
    sent = {}
    for name, state in definition["States"].items():
        if state.get("Resource") == "arn:aws:states:::lambda:invoke":
            payload = state["Parameters"]["Payload"]
            assert payload == {"task": payload.get("task"), "input.$": "$"}, name
            assert state["OutputPath"] == "$.Payload", name  # the task's answer is the run's next state
            sent[name] = TaskEnvelope.model_validate({"task": payload["task"], "input": {}}).task
    assert set(sent.values()) == set(workflow.STEPS), "a step no state calls, or a state calling no step"
