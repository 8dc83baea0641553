"""A local core device applying deployments of small shell components: install, run, notify, roll back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from support.device_fakes import FakeControlPlane, data, deploy, recipe

from loupe_local.devices.runtime import Device, DeviceOptions

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
        DeviceOptions(thing="t1", root=tmp_path, endpoint="http://127.0.0.1:9", settle_seconds=0.3, ack_seconds=1.5),
        FakeControlPlane(),  # recipes from a fake greengrassv2, the stand-in's local protocol recorded
    )
    yield dev
    dev.shutdown()


def status(dev: Any, name: str) -> dict[str, Any]:
    return json.loads((dev.layout.work(name) / "status.json").read_text())


def test_a_new_soft_dependency_is_announced_without_a_restart(device: Any) -> None:
    for r in (data("1.0.0"), data("1.1.0"), APP):
        device.control.gg.add(r)
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


def test_components_hear_the_update_signal_when_the_device_was_started_under_nohup(device: Any) -> None:
    """nohup leaves SIGHUP ignored for every child, and a shell can never trap a signal ignored when it started:
    the nucleus gives its components the default back, or the app above would miss the notification."""
    import signal

    for r in (data("1.0.0"), data("1.1.0"), APP):
        device.control.gg.add(r)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does to the device's process
    try:
        assert deploy(device, "d1", {"data": "1.0.0", "app": "1.0.0"}) == ("SUCCEEDED", "")
        pid = device.running["app"].process.pid
        assert deploy(device, "d2", {"data": "1.1.0", "app": "1.0.0"}) == ("SUCCEEDED", "")
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert device.running["app"].process.pid == pid
    assert status(device, "app")["model_version"] == "1.1.0"


def test_a_component_reporting_errored_rolls_the_device_back(device: Any) -> None:
    bad = recipe("data", "2.0.0", {"Install": "echo bad > {work:path}/current"})
    for r in (data("1.0.0"), bad, APP):
        device.control.gg.add(r)
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
    device.control.gg.add(svc1)
    device.control.gg.add(svc2)
    assert deploy(device, "d1", {"svc": "1.0.0"})[0] == "SUCCEEDED"
    outcome, reason = deploy(device, "d2", {"svc": "2.0.0"})
    assert outcome == "FAILED" and "Install exited with 3" in reason and "rolled back" in reason
    assert device.running["svc"].component.version == "1.0.0"
    assert device.running["svc"].process.poll() is None
    assert "cannot install" in device.layout.log("svc").read_text()


def test_a_run_that_crashes_fails_the_deployment(device: Any) -> None:
    device.control.gg.add(recipe("svc", "1.0.0", {"Run": "echo crash; exit 7"}))
    outcome, reason = deploy(device, "d1", {"svc": "1.0.0"})
    assert outcome == "FAILED" and "exited with 7" in reason
    assert device.running == {}  # rolled back to the previous (empty) set


def test_install_timeouts_and_missing_versions_are_reported(device: Any) -> None:
    device.control.gg.add(recipe("slow", "1.0.0", {"Install": {"Script": "sleep 5", "Timeout": 0.5}}))
    outcome, reason = deploy(device, "d1", {"slow": "1.0.0"})
    assert outcome == "FAILED" and "Install timed out" in reason
    outcome, reason = deploy(device, "d2", {"ghost": "9.9.9"})
    assert outcome == "FAILED" and "ghost 9.9.9 does not exist" in reason


def test_skip_notify_leaves_running_components_alone(device: Any) -> None:
    for r in (data("1.0.0"), data("1.1.0"), APP):
        device.control.gg.add(r)
    deploy(device, "d1", {"data": "1.0.0", "app": "1.0.0"})
    status = device.layout.work("app") / "status.json"
    os.utime(status, (1_000_000_000, 1_000_000_000))  # an old timestamp: any rewrite of the file changes it
    before = os.stat(status).st_mtime
    policy = {"componentUpdatePolicy": {"action": "SKIP_NOTIFY_COMPONENTS"}}
    assert deploy(device, "d2", {"data": "1.1.0", "app": "1.0.0"}, **policy)[0] == "SUCCEEDED"
    assert not (device.layout.work("app") / "update.json").exists()
    assert os.stat(device.layout.work("app") / "status.json").st_mtime == before


def test_configuration_given_through_setenv_restarts_the_component_when_it_changes(device: Any) -> None:
    """The nucleus interpolates recipe variables in Setenv too, and a changed lifecycle restarts the component: a
    configuration change that reaches the process as an environment variable is seen by the new process."""
    run = {
        "Setenv": {"GREETING": "{configuration:/greeting}"},
        "Script": 'printf \'{"state": "RUNNING", "greeting": "%s"}\' "$GREETING" > status.json; exec sleep 30',
    }
    svc = recipe("svc", "1.0.0", {"Run": run})
    svc["ComponentConfiguration"]["DefaultConfiguration"]["greeting"] = "hello"
    device.control.gg.add(svc)
    assert deploy(device, "d1", {"svc": "1.0.0"})[0] == "SUCCEEDED"
    pid = device.running["svc"].process.pid
    assert status(device, "svc")["greeting"] == "hello"
    device.apply(
        {
            "deploymentId": "d2",
            "components": {
                "svc": {"componentVersion": "1.0.0", "configurationUpdate": {"merge": '{"greeting": "$(id)"}'}}
            },
            "deploymentPolicies": {"failureHandlingPolicy": "ROLLBACK"},
        }
    )
    assert device.control.reports[-1][:2] == ("/deployments/d2/status", "SUCCEEDED")
    assert device.running["svc"].process.pid != pid
    assert status(device, "svc")["greeting"] == "$(id)"  # data, not a command


def test_a_new_version_keeps_the_device_configuration_and_a_removed_component_loses_it(device: Any) -> None:
    """Greengrass keeps a component's configuration when a deployment brings a new version with other defaults
    ("Update component configurations"); only a configurationUpdate changes it. A component the deployment drops
    loses its configuration: deployed again later, it starts from its defaults."""
    for version in ("1.0.0", "1.1.0"):
        device.control.gg.add(data(version))
    device.apply({"deploymentId": "d1", "components": {"data": {"componentVersion": "1.0.0"}}})
    assert (device.layout.work("data") / "current").read_text().strip() == "1.0.0"
    device.apply({"deploymentId": "d2", "components": {"data": {"componentVersion": "1.1.0"}}})
    assert device.control.reports[-1][1] == "SUCCEEDED"
    assert device.running["data"].component.version == "1.1.0"
    assert (device.layout.work("data") / "current").read_text().strip() == "1.0.0"  # the 1.0.0 default stayed
    reset = {"componentVersion": "1.1.0", "configurationUpdate": {"reset": ["/version"]}}
    device.apply({"deploymentId": "d3", "components": {"data": reset}})
    assert (device.layout.work("data") / "current").read_text().strip() == "1.1.0"
    # merged values persist across deployments that do not mention them
    merge = {"componentVersion": "1.1.0", "configurationUpdate": {"merge": '{"version": "merged"}'}}
    device.apply({"deploymentId": "d4", "components": {"data": merge}})
    device.apply({"deploymentId": "d5", "components": {"data": {"componentVersion": "1.0.0"}}})
    assert (device.layout.work("data") / "current").read_text().strip() == "merged"
    # removed, then deployed again: its defaults
    device.control.gg.add(recipe("other", "1.0.0", {"Install": "true"}))
    device.apply({"deploymentId": "d6", "components": {"other": {"componentVersion": "1.0.0"}}})
    assert "data" not in device.current["components"]
    device.apply({"deploymentId": "d7", "components": {"data": {"componentVersion": "1.1.0"}}})
    assert (device.layout.work("data") / "current").read_text().strip() == "1.1.0"
