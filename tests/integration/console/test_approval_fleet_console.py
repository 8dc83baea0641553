"""The approver's path in the console app (Chromium, signed in as a member of the stack's ``approvers`` group), from
the field to the fleet: a gate-passing package is registered, SageMaker's registration event puts it beside
production on the two local Greengrass core devices (shadow), the devices compare it on the frames their cameras
see, the Models page shows that field agreement next to the gate's numbers, the approver approves there, the
approval's event starts the edge deployment workflow (real ASL in moto's engine, real handlers), the devices install
the model and run it, and the Fleet page shows each device serving it and the run that put it there."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.chromium import watched_page
from support.console_users import browser_session, session_init_script
from support.deploy_packages import register_package, tiny_detector
from support.fixture_models import box_detector
from support.health_fleet import (
    deployment_timeout,
    deployments_store,
    device_components,
    feed,
    finished_run,
    fleet_group_of_its_own,
    health_fleet,
    registered,
)
from support.waiting import wait_for

pytestmark = pytest.mark.integration

DEPLOYMENT_TIMEOUT = 60  # s: DeploymentTimeoutSeconds here (status checks from 2 s on, at most every 3 s)
FRAMES_PER_DEVICE = 10
EVERY_NTH = 5  # the template's ShadowEveryNthFrame default


@pytest.fixture(scope="module")
def rt(local_aws: Any) -> Iterator[Any]:
    """The session's stack, its fleet group holding only this module's devices while it runs."""
    with deployment_timeout(local_aws, DEPLOYMENT_TIMEOUT), fleet_group_of_its_own(local_aws):
        yield local_aws


@pytest.fixture(scope="module")
def fleet(rt: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[str], dict[str, Any]]]:
    prefix = f"loupe-device-apweb{uuid.uuid4().hex[:6]}"
    with health_fleet(rt, tmp_path_factory.mktemp("approval-overlay"), prefix) as started:
        yield started


@pytest.fixture
def approver_page(browser: Any, rt: Any) -> Iterator[tuple[Any, dict[str, str]]]:
    """A page of the app signed in as a new member of ``approvers``; the test fails if the app's
    Content-Security-Policy blocked anything or a page threw."""
    session = browser_session(rt, "approvers")
    with watched_page(browser, session_init_script(session)) as page:
        yield page, session


def test_an_approver_sees_the_field_agreement_approves_in_the_browser_and_the_devices_serve_it(
    rt: Any, fleet: tuple[Any, list[str], dict[str, Any]], approver_page: tuple[Any, dict[str, str]], console: str
) -> None:
    _, things, _ = fleet
    page, approver = approver_page
    sm, store, group = rt.client("sagemaker"), deployments_store(rt), rt.physical("FleetThingGroup")
    tag = uuid.uuid4().hex[:6]

    # production: a model that finds nothing, approved and serving
    production = register_package(rt, onnx_bytes=tiny_detector(anchors=8), model_version=f"approd-{tag}")
    sm.update_model_package(ModelPackageArn=production["arn"], ModelApprovalStatus="Approved")
    run = finished_run(rt, production["arn"], "approved")
    assert run["status"] == "SUCCEEDED", run.get("output") or run.get("cause")

    # the candidate (a scratch on every frame) passed the gate: registered, it goes beside production by itself
    gate = {"gate": "passed", "test_map50": "0.81", "gate_reason": "passed: above the champion bar"}
    candidate = register_package(rt, onnx_bytes=box_detector(0.9), model_version=f"apweb-{tag}", metadata=gate)
    registered(rt, candidate["arn"])
    run = finished_run(rt, candidate["arn"], "shadow")
    assert run["status"] == "SUCCEEDED", run.get("output") or run.get("cause")
    # each device loads the candidate after the shadow deployment has completed: a frame that comes first is seen by
    # production alone, so the cameras go on until the candidate has compared frames (every 5th once it runs)
    fed = 0
    totals: dict[str, Any] = {}
    while totals.get("frames", 0) < len(things) * FRAMES_PER_DEVICE // EVERY_NTH and fed < 4 * FRAMES_PER_DEVICE:
        for thing in things:
            for i in range(FRAMES_PER_DEVICE):
                feed(rt, thing, f"ap{fed + i:03d}-{tag}.png")
        fed += FRAMES_PER_DEVICE

        def seen_all(count: int = fed) -> dict[str, Any] | None:
            found = store.shadow_totals(f"apweb-{tag}")["totals"]
            return found if found.get("production_frames", 0) >= len(things) * count else None

        totals = wait_for(seen_all, 90, "both devices' shadow windows in the deployments table")

    # the Models page: the gate's numbers and the field's, side by side, then the decision
    version = candidate["arn"].rsplit("/", 1)[-1]
    page.goto(f"{console}/web/models.html")
    page.click(f"#packages tr[data-version='{version}']")
    field = page.locator(f"table[data-field='apweb-{tag}']")
    field.wait_for()

    def page_shows_the_table() -> dict[str, str] | None:  # the page polls; a last window may still land
        frames = store.shadow_totals(f"apweb-{tag}")["totals"]["frames"]
        rows = {r.locator("th").inner_text(): r.locator("td").inner_text() for r in field.locator("tr").all()}
        return rows if rows.get("frames compared") == str(frames) else None

    shown = wait_for(page_shows_the_table, 30, "the Models page showing the deployments table's field agreement")
    compared = int(shown["frames compared"])
    assert compared >= len(things) * FRAMES_PER_DEVICE // EVERY_NTH, shown
    assert shown["devices"] == str(len(things))
    assert shown["false alarms (production OK, candidate NG)"] == str(compared)  # production finds nothing
    assert shown["missed defects (production NG, candidate OK)"] == "0"
    page.wait_for_selector("#approve:not([disabled])")
    page.fill("#decision-reason", "field agreement checked")
    page.click("#approve")
    page.wait_for_selector("#msg[data-kind='ok']")
    described = sm.describe_model_package(ModelPackageName=candidate["arn"])
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == f"Approved by {approver['email']}: field agreement checked"
    assert described["CustomerMetadataProperties"]["field_shadow_frames"] == str(compared)  # what the approver saw

    # the approval's event started the workflow; it ends when every device of the group runs the model
    run = finished_run(rt, candidate["arn"], "approved")
    assert run["status"] == "SUCCEEDED", run.get("output") or run.get("cause")
    assert json.loads(run["output"])["summary"]["outcome"] == "COMPLETED"
    assert store.current_target(group)["package_arn"] == candidate["arn"]
    assert store.shadow_target(group) is None
    for thing in things:
        components = device_components(rt, thing)
        assert components["com.loupe.model"]["config"]["modelVersion"] == f"apweb-{tag}"
        assert "com.loupe.shadow" not in components

    # the Fleet page: each device serving it (its own health report says so), and the run
    page.goto(f"{console}/web/fleet.html")
    for thing in things:
        page.wait_for_selector(f"tr[data-thing='{thing}'] td.serving[data-serving='apweb-{tag}']", timeout=60_000)
    page.wait_for_selector(f"tr[data-model='{version}'][data-outcome='COMPLETED']")  # the run names the package
