"""On the local stack with default parameters (its own process, as the other console_web tests): an approver
approves a package on the Models page in Chromium and the devices serve it. Two local Greengrass core devices run
against that stack (its MQTT broker, its IoT and Greengrass stand-ins); the approval's event starts the edge
deployment workflow there (DeploymentTimeoutSeconds at its default: status checks from 2 s on, then less often, up
to every 60 s); the test ends when the run has COMPLETED, each device runs the model and the Fleet page shows each
one serving it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.chromium import watched_page
from support.console_users import browser_session, session_init_script
from support.deploy_packages import register_package
from support.health_fleet import device_components, finished_run, health_fleet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(web_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    prefix = f"loupe-device-webfleet{uuid.uuid4().hex[:6]}"
    folder = tmp_path_factory.mktemp("web-fleet-overlay")
    with health_fleet(web_stack, folder, prefix, state=web_stack.state) as (_, names, _):
        yield names


def test_an_approver_approves_on_the_models_page_and_the_devices_serve_it(
    web_stack: Any, app_url: str, browser: Any, fleet: list[str]
) -> None:
    model_version = f"webfleet-{uuid.uuid4().hex[:6]}"
    package = register_package(web_stack, model_version=model_version, metadata={"gate": "passed"})
    version = package["arn"].rsplit("/", 1)[-1]
    approver = browser_session(web_stack, "approvers")
    with watched_page(browser, session_init_script(approver)) as page:
        page.goto(f"{app_url}/web/models.html")
        page.click(f"#packages tr[data-version='{version}']")
        page.wait_for_selector("#approve:not([disabled])")
        page.fill("#decision-reason", "for the line")  # typed while the package's evaluation is still loading
        page.wait_for_selector("#samples[data-loaded='true']")  # the detail was drawn again: the reason stays
        assert page.input_value("#decision-reason") == "for the line"
        page.click("#approve")
        page.wait_for_selector("#msg[data-kind='ok']")

        run = finished_run(web_stack, package["arn"], "approved", timeout=240)
        assert run["status"] == "SUCCEEDED", run.get("output") or run.get("cause")
        assert json.loads(run["output"])["summary"]["outcome"] == "COMPLETED"
        for thing in fleet:
            assert device_components(web_stack, thing)["com.loupe.model"]["config"]["modelVersion"] == model_version

        page.goto(f"{app_url}/web/fleet.html")
        for thing in fleet:
            serving = f"tr[data-thing='{thing}'] td.serving[data-serving='{model_version}']"
            page.wait_for_selector(serving, timeout=60_000)
        page.wait_for_selector(f"tr[data-model='{version}'][data-outcome='COMPLETED']")
    described = web_stack.client("sagemaker").describe_model_package(ModelPackageName=package["arn"])
    assert described["ApprovalDescription"] == f"Approved by {approver['email']}: for the line"
