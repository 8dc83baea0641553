"""A local core device applying deployments of small shell components: install, run, notify, roll back."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from loupe_local.device_runtime import Device, DeviceOptions

ARN = "arn:aws:greengrass:us-east-1:123456789012:components:{}".format


class FakeGG:
    """The part of greengrassv2 a device reads: component versions and their recipes."""

    def __init__(self) -> None:
        self.recipes: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, recipe: dict[str, Any]) -> None:
        self.recipes[(recipe["ComponentName"], recipe["ComponentVersion"])] = recipe

    def list_components(self, **_: Any) -> dict[str, Any]:
        names = sorted({n for n, _ in self.recipes})
        return {"components": [{"componentName": n, "arn": ARN(n)} for n in names]}

    def list_component_versions(self, arn: str, **_: Any) -> dict[str, Any]:
        name = arn.rsplit(":", 1)[-1]
        return {
            "componentVersions": [
                {"componentName": n, "componentVersion": v, "arn": f"{ARN(n)}:versions:{v}"}
                for n, v in self.recipes
                if n == name
            ]
        }

    def get_component(self, arn: str, **_: Any) -> dict[str, Any]:
        _, name, _, version = arn.rsplit(":", 3)
        return {"recipe": json.dumps(self.recipes[(name, version)]).encode()}

    def describe_component(self, arn: str) -> dict[str, Any]:
        return {"status": {"componentState": "DEPLOYABLE"}}


def recipe(name: str, version: str, lifecycle: dict[str, Any], deps: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDependencies": deps or {},
        "ComponentConfiguration": {"DefaultConfiguration": {"version": version}},
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": lifecycle}],
    }


# The data component's Install writes its version where the app can read it; no Run (FINISHED).
def data(version: str) -> dict[str, Any]:
    return recipe("data", version, {"Install": "echo {configuration:/version} > {work:path}/current"})


# The app reacts to SIGHUP (the local update notification) by re-reading the data and reporting its state.
APP_RUN = (
    "report() { v=$(cat {data:work:path}/current); "
    'if [ "$v" = bad ]; then s=ERRORED; else s=RUNNING; fi; '
    'printf \'{"state": "%s", "error": "data %s", "model_version": "%s"}\' "$s" "$v" "$v" > status.json.tmp; '
    "mv status.json.tmp status.json; }; "
    "trap report HUP; report; while true; do sleep 0.1; done"
)
APP = recipe("app", "1.0.0", {"Run": APP_RUN}, {"data": {"DependencyType": "SOFT"}})


@pytest.fixture
def device(tmp_path: Path) -> Any:
    dev = Device(
        DeviceOptions(thing="t1", root=tmp_path, endpoint="http://127.0.0.1:9", settle_seconds=0.3, ack_seconds=1.5)
    )
    dev.gg = FakeGG()
    dev.reports: list[tuple[str, str, str]] = []

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        dev.reports.append((path, body.get("status", ""), body.get("reason", "")))
        return {}

    dev._post = post  # the stand-in's local protocol, recorded
    yield dev
    dev.shutdown()


def deploy(dev: Any, dep_id: str, components: dict[str, str], **policies: Any) -> tuple[str, str]:
    dev.apply(
        {
            "deploymentId": dep_id,
            "components": {n: {"componentVersion": v} for n, v in components.items()},
            "deploymentPolicies": {"failureHandlingPolicy": "ROLLBACK", **policies},
        }
    )
    final = [r for r in dev.reports if r[0] == f"/deployments/{dep_id}/status" and r[1] != "IN_PROGRESS"]
    return final[-1][1], final[-1][2]


def status(dev: Any, name: str) -> dict[str, Any]:
    return json.loads((dev.layout.work(name) / "status.json").read_text())


def test_a_new_soft_dependency_is_announced_without_a_restart(device: Any) -> None:
    for r in (data("1.0.0"), data("1.1.0"), APP):
        device.gg.add(r)
    assert deploy(device, "d1", {"data": "1.0.0", "app": "1.0.0"}) == ("SUCCEEDED", "")
    pid = device.running["app"].process.pid
    assert status(device, "app")["model_version"] == "1.0.0"
    assert deploy(device, "d2", {"data": "1.1.0", "app": "1.0.0"}) == ("SUCCEEDED", "")
    assert device.running["app"].process.pid == pid  # SOFT: notified, not restarted
    assert status(device, "app")["model_version"] == "1.1.0"
    update = json.loads((device.layout.work("app") / "update.json").read_text())
    assert update == {"deployment_id": "d2", "changed": {"data": "1.1.0"}, "at": update["at"]}
    assert device.running["data"].state == "FINISHED"
    saved = json.loads((device.layout.root / "current.json").read_text())
    assert saved["deployment_id"] == "d2" and saved["components"]["data"]["version"] == "1.1.0"


def test_a_component_reporting_errored_rolls_the_device_back(device: Any) -> None:
    bad = recipe("data", "2.0.0", {"Install": "echo bad > {work:path}/current"})
    for r in (data("1.0.0"), bad, APP):
        device.gg.add(r)
    deploy(device, "d1", {"data": "1.0.0", "app": "1.0.0"})
    pid = device.running["app"].process.pid
    outcome, reason = deploy(device, "d2", {"data": "2.0.0", "app": "1.0.0"})
    assert outcome == "FAILED"
    assert "app 1.0.0 did not reach RUNNING: reported ERRORED: data bad" in reason
    assert reason.endswith("rolled back to the previous components")
    assert device.running["data"].component.version == "1.0.0"
    assert (device.layout.work("data") / "current").read_text().strip() == "1.0.0"
    assert device.running["app"].process.pid == pid
    assert status(device, "app") == {"state": "RUNNING", "error": "data 1.0.0", "model_version": "1.0.0"}


def test_an_install_failure_restores_the_previous_version(device: Any) -> None:
    svc1 = recipe("svc", "1.0.0", {"Run": "exec sleep 30"})
    svc2 = recipe("svc", "2.0.0", {"Install": "echo cannot install; exit 3", "Run": "exec sleep 30"})
    device.gg.add(svc1)
    device.gg.add(svc2)
    assert deploy(device, "d1", {"svc": "1.0.0"})[0] == "SUCCEEDED"
    outcome, reason = deploy(device, "d2", {"svc": "2.0.0"})
    assert outcome == "FAILED" and "Install exited with 3" in reason and "rolled back" in reason
    assert device.running["svc"].component.version == "1.0.0"
    assert device.running["svc"].process.poll() is None
    assert "cannot install" in device.layout.log("svc").read_text()


def test_a_run_that_crashes_fails_the_deployment(device: Any) -> None:
    device.gg.add(recipe("svc", "1.0.0", {"Run": "echo crash; exit 7"}))
    outcome, reason = deploy(device, "d1", {"svc": "1.0.0"})
    assert outcome == "FAILED" and "exited with 7" in reason
    assert device.running == {}  # rolled back to the previous (empty) set


def test_install_timeouts_and_missing_versions_are_reported(device: Any) -> None:
    device.gg.add(recipe("slow", "1.0.0", {"Install": {"Script": "sleep 5", "Timeout": 0.5}}))
    outcome, reason = deploy(device, "d1", {"slow": "1.0.0"})
    assert outcome == "FAILED" and "Install timed out" in reason
    outcome, reason = deploy(device, "d2", {"ghost": "9.9.9"})
    assert outcome == "FAILED" and "ghost 9.9.9 does not exist" in reason


def test_skip_notify_leaves_running_components_alone(device: Any) -> None:
    for r in (data("1.0.0"), data("1.1.0"), APP):
        device.gg.add(r)
    deploy(device, "d1", {"data": "1.0.0", "app": "1.0.0"})
    before = os.stat(device.layout.work("app") / "status.json").st_mtime
    time.sleep(0.05)
    policy = {"componentUpdatePolicy": {"action": "SKIP_NOTIFY_COMPONENTS"}}
    assert deploy(device, "d2", {"data": "1.1.0", "app": "1.0.0"}, **policy)[0] == "SUCCEEDED"
    assert not (device.layout.work("app") / "update.json").exists()
    assert os.stat(device.layout.work("app") / "status.json").st_mtime == before
