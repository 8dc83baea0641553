"""The demo's deploy stage stops at once, naming the outcome and reason, when the edge deployment of the model is
refused or fails (the deployments table's run, or a FAILED EdgeDeployment execution), instead of waiting out the
stage timeout for devices that will never serve it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from loupe_local.demo import stages as demo_stages
from loupe_local.demo.command import Demo, DemoConfig, DemoError
from loupe_local.demo.context import ModelRecord
from loupe_local.observer import Observer

ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/2"
OTHER = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/1"


class FakeObserver:
    def __init__(self, failure: tuple[str, str] | None) -> None:
        self.failure = failure
        self.asked: list[str] = []

    def deployment_failure(self, package_arn: str) -> tuple[str, str] | None:
        self.asked.append(package_arn)
        return self.failure

    def device_state(self, thing: str) -> dict[str, Any]:
        return {"deployment": {}, "components": {}}  # never serving


def demo_deploying(tmp_path: Path, observer: Any) -> Demo:
    demo = Demo(DemoConfig(out=tmp_path, timeout_stage=3600.0), tmp_path)
    demo.observer = observer
    demo.things = ["loupe-device-1", "loupe-device-2"]
    demo.progress.say = lambda text: None  # type: ignore[method-assign]
    return demo


def test_a_refused_deployment_stops_the_demo_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    observer = FakeObserver(("REFUSED", "VerificationFailed: the model's digest does not match"))
    demo = demo_deploying(tmp_path, observer)
    monkeypatch.setattr(demo, "device_versions", lambda: {})
    record = ModelRecord(version=2, package_arn=ARN, dataset_version=2, parent_dataset_version=1, model_version="2")
    t0 = time.monotonic()
    with pytest.raises(DemoError, match=r"model v2 was not deployed: REFUSED \(VerificationFailed: the model's digest"):
        demo_stages.deploy(demo, record, 2)
    assert time.monotonic() - t0 < 5
    assert observer.asked == [ARN]
    assert demo.progress.stages[-1]["name"] == "deploy model v2 to 2 devices (Greengrass, local)"


def test_without_a_failure_the_stage_keeps_waiting_for_the_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = demo_deploying(tmp_path, FakeObserver(None))
    monkeypatch.setattr(demo, "device_versions", lambda: {})
    record = ModelRecord(version=1, package_arn=ARN, dataset_version=1, parent_dataset_version=None, model_version="1")
    checks: list[object] = []
    monkeypatch.setattr(demo, "wait", lambda what, predicate, status=None, timeout=None: checks.append(predicate()))
    demo_stages.deploy(demo, record, 1)  # not serving yet, no failure: no error, the wait goes on
    assert checks == [False]  # the wait's check says "not yet" rather than ending the stage
    observer = demo.obs
    assert isinstance(observer, FakeObserver) and observer.asked == [ARN]


class FakeStepFunctions:
    def __init__(self, executions: list[dict[str, Any]], inputs: dict[str, dict[str, Any]]) -> None:
        self.executions = executions
        self.inputs = inputs

    def list_executions(self, stateMachineArn: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"executions": self.executions}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        return self.inputs[executionArn]


def observer_with(tmp_path: Path, runs: list[dict[str, Any]], sfn: FakeStepFunctions) -> Observer:
    resources = {"EdgeDeploymentStateMachine": {"physical": "edge", "arn": "arn:aws:states:::stateMachine:edge"}}
    observer = Observer("http://127.0.0.1:9", "us-east-1", resources, tmp_path)
    observer.deployments = lambda limit=20: runs  # type: ignore[method-assign]
    observer._clients["stepfunctions"] = sfn
    return observer


@pytest.mark.parametrize("outcome", ["REFUSED", "ERROR", "DEPLOYED_NOT_SERVING", "FAILED"])
def test_the_observer_names_a_failed_run_of_the_package(tmp_path: Path, outcome: str) -> None:
    runs = [
        {"package_arn": OTHER, "outcome": "REFUSED", "reason": "an older package's"},
        {"package_arn": ARN, "outcome": outcome, "reason": "why"},
    ]
    observer = observer_with(tmp_path, runs, FakeStepFunctions([], {}))
    assert observer.deployment_failure(ARN) == (outcome, "why")


def test_completed_or_other_packages_runs_are_no_failure(tmp_path: Path) -> None:
    runs = [
        {"package_arn": OTHER, "outcome": "REFUSED", "reason": "an older package's"},
        {"package_arn": ARN, "outcome": "COMPLETED", "reason": ""},
        {"package_arn": ARN, "outcome": "SUPERSEDED", "reason": "a newer package"},
    ]
    running = [{"executionArn": "e1", "name": "e1", "status": "RUNNING"}]
    observer = observer_with(tmp_path, runs, FakeStepFunctions(running, {}))
    assert observer.deployment_failure(ARN) is None


def test_a_failed_edge_deployment_execution_for_the_package_is_a_failure(tmp_path: Path) -> None:
    executions = [
        {"executionArn": "e1", "name": "e1", "status": "FAILED"},
        {"executionArn": "e2", "name": "e2", "status": "FAILED"},
    ]
    inputs = {
        "e1": {"input": f'{{"detail": {{"ModelPackageArn": "{OTHER}"}}}}', "error": "X", "cause": "other"},
        "e2": {"input": f'{{"detail": {{"ModelPackageArn": "{ARN}"}}}}', "error": "States.Timeout", "cause": "late"},
    }
    observer = observer_with(tmp_path, [], FakeStepFunctions(executions, inputs))
    assert observer.deployment_failure(ARN) == ("FAILED", "States.Timeout: late")


def test_a_failed_shadow_run_of_the_package_is_no_failure_of_its_deployment(tmp_path: Path) -> None:
    # a gate-passing package goes out beside production first (mode shadow); if that run fails, the package's own
    # deployment (after its approval) has still to happen: the demo must not stop on it
    executions = [
        {"executionArn": "s1", "name": "shadow-v2-x", "status": "FAILED"},
        {"executionArn": "u1", "name": "unshadow-v2-x", "status": "FAILED"},
    ]
    inputs = {
        "s1": {"input": f'{{"package_arn": "{ARN}", "mode": "shadow"}}', "error": "DeploymentIncomplete"},
        "u1": {"input": f'{{"package_arn": "{OTHER}", "mode": "end_shadow", "ended": "{ARN}"}}', "error": "X"},
    }
    observer = observer_with(tmp_path, [], FakeStepFunctions(executions, inputs))
    assert observer.deployment_failure(ARN) is None
    executions.append({"executionArn": "d1", "name": "deploy-v2-x", "status": "FAILED"})
    inputs["d1"] = {"input": f'{{"package_arn": "{ARN}", "mode": "approved"}}', "error": "DeploymentIncomplete"}
    assert observer.deployment_failure(ARN) == ("FAILED", "DeploymentIncomplete")
