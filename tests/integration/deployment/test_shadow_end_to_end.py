"""Shadow mode end to end in the local AWS: the real ASL in moto's engine, the real handlers (model package events,
deployment tasks, edge health, console API behind the local HTTP API and its JWT authorizer), two local core devices
running the real inference component, MQTT on loopback.

Production P (a detector that finds nothing) runs on the fleet. A package C that passed the gate (a detector that finds
one confident box on every frame) is registered: its registration event alone deploys it beside P, every 5th frame
(``ShadowEveryNthFrame``'s default). A package R the gate refused is registered too and is never shadowed. The devices'
health windows add up in the deployments table; ``GET /models`` shows C's field agreement (no verdict agreed: P says
OK and C says NG on every compared frame); the approver's approval writes those numbers into C's metadata, the
deployment of C follows, and the shadow ends on the devices.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.console_users import api, signed_in
from support.deploy_packages import register_package, tiny_detector
from support.edge_mqtt import Subscriber
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
from support.waiting import wait_for, wait_until

from loupe_local.local_auth import MQTT_USERNAME, mqtt_password

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
DEPLOYMENT_TIMEOUT = 60  # s: DeploymentTimeoutSeconds here (status checks from 2 s on, at most every 3 s)
FRAMES_PER_DEVICE = 10
EVERY_NTH = 5  # the template's ShadowEveryNthFrame default


@pytest.fixture(scope="module")
def rt(local_aws: Any) -> Iterator[Any]:
    """The session's local AWS with this module's DeploymentTimeoutSeconds, and a thing group holding only this
    module's devices (members left by other modules are put back at the end)."""
    with deployment_timeout(local_aws, DEPLOYMENT_TIMEOUT), fleet_group_of_its_own(local_aws):
        yield local_aws


@pytest.fixture(scope="module")
def fleet(rt: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[str], dict[str, Any]]]:
    with health_fleet(rt, tmp_path_factory.mktemp("shadow-overlay"), f"loupe-device-sh{uuid.uuid4().hex[:6]}") as (
        fleet,
        names,
        inference,
    ):
        yield fleet, names, inference


@pytest.fixture(scope="module")
def health(rt: Any) -> Iterator[Subscriber]:
    """Everything the fleet's devices publish (``loupe/+/#``): their health says when a candidate has loaded. It
    logs in with the run's credential, not the environment's: a handler running in this process holds its role's
    session there while it runs."""
    login = (MQTT_USERNAME, mqtt_password(rt.credentials))
    seen = Subscriber(rt.mqtt["host"], int(rt.mqtt["port"]), thing="+", login=login)
    yield seen
    seen.close()


# ------------------------------------------------------------------ helpers
def runs_naming(rt: Any, package_arn: str) -> list[str]:
    sfn = rt.client("stepfunctions")
    out = []
    for e in sfn.list_executions(stateMachineArn=rt.arn("EdgeDeploymentStateMachine"))["executions"]:
        if package_arn in (sfn.describe_execution(executionArn=e["executionArn"]).get("input") or ""):
            out.append(e["name"])
    return out


# ------------------------------------------------------------------ the scenario
def test_a_gate_passing_package_is_shadowed_its_agreement_shown_and_recorded_at_approval(
    rt: Any, fleet: tuple[Any, list[str], dict[str, Any]], health: Subscriber
) -> None:
    _, things, _ = fleet
    sm, table = rt.client("sagemaker"), deployments_store(rt)
    group = rt.physical("FleetThingGroup")
    tag = uuid.uuid4().hex[:6]

    # production: P approved and deployed through the workflow
    prod = register_package(rt, onnx_bytes=tiny_detector(anchors=8), model_version=f"prod-{tag}")
    sm.update_model_package(ModelPackageArn=prod["arn"], ModelApprovalStatus="Approved")
    run = finished_run(rt, prod["arn"], "approved")
    assert run["status"] == "SUCCEEDED", run.get("output") or run.get("cause")
    assert table.current_target(group)["package_arn"] == prod["arn"]

    # R refused by the gate, C passed: both registered, only C goes out, by its registration event alone
    refused = register_package(
        rt, model_version=f"refused-{tag}", metadata={"gate": "refused", "gate_refusal": "test mAP50 below bar"}
    )
    cand = register_package(
        rt, onnx_bytes=box_detector(0.9), model_version=f"cand-{tag}", metadata={"gate": "passed", "test_map50": "0.8"}
    )
    events_fn = rt.invoker.find(rt.physical("ModelPackageEventsFunction"))
    delivered = events_fn.invocations
    registered(rt, refused["arn"])
    registered(rt, cand["arn"])
    run = finished_run(rt, cand["arn"], "shadow")
    out = json.loads(run["output"])
    assert run["status"] == "SUCCEEDED", out
    assert out["summary"]["outcome"] == "COMPLETED" and out["summary"]["mode"] == "shadow"
    assert out["package"]["arn"] == prod["arn"]  # production re-sent as it was
    assert out["summary"]["candidate"]["model_version"] == f"cand-{tag}"
    assert out["summary"]["candidate"]["every_nth_frame"] == EVERY_NTH
    # the sentinel: a synchronous delivery returns after both registration events were handled
    assert wait_until(lambda: events_fn.invocations >= delivered + 2, 30)
    rt.invoke(
        "ModelPackageEventsFunction", json.loads((REPO / "events" / "aws_model_package_state_change.json").read_text())
    )
    assert runs_naming(rt, refused["arn"]) == []  # the refused package was never shadowed
    for thing in things:
        components = device_components(rt, thing)
        assert components["com.loupe.model"]["config"]["modelVersion"] == f"prod-{tag}"
        assert components["com.loupe.shadow"]["config"]["modelVersion"] == f"cand-{tag}"
        shadow = components["com.loupe.inference"]["config"]["settings"]["shadow"]
        assert shadow["enabled"] is True and shadow["modelVersion"] == f"cand-{tag}"
        assert shadow["everyNthFrame"] == EVERY_NTH

    # the devices run it: production decides every result, the candidate sees every 5th frame. The deployment is
    # COMPLETED once the components run; the candidate's model loads after that, in the background (production never
    # waits for it, and a frame that arrives before it has loaded is not compared), so the frames go in once each
    # device's health says the candidate is running
    def candidates_running() -> bool:
        running = {
            thing
            for thing, message in health.by_thing("health")
            if (message.get("shadow") or {}).get("model_version") == f"cand-{tag}"
            and message["shadow"].get("state") == "running"
        }
        return running >= set(things)

    assert wait_until(candidates_running, 60), [m.get("shadow") for m in health.of("health")][-4:]
    for thing in things:
        for i in range(FRAMES_PER_DEVICE):
            feed(rt, thing, f"f{i:02d}-{tag}.png")
    compared = 2 * FRAMES_PER_DEVICE // EVERY_NTH

    def counted() -> dict[str, Any] | None:
        summary = table.shadow_totals(f"cand-{tag}")
        return summary if summary["totals"].get("production_frames", 0) >= 2 * FRAMES_PER_DEVICE else None

    totals = wait_for(counted, 90, "both devices' shadow windows in the deployments table")["totals"]
    assert totals["frames"] == compared and totals["verdict_ok_ng"] == compared and totals["errors"] == 0

    # the registry shows the field agreement beside the gate's numbers
    approver = signed_in(rt, "approvers")
    base = next(s for s in rt.standins if type(s).__name__ == "HttpApis").urls["ConsoleApi"]
    status, _, listed = api(f"{base}/models", token=approver["id"])
    assert status == 200, listed
    shown = next(p for p in listed["packages"] if p["arn"] == cand["arn"])
    field = shown["field_agreement"]
    assert shown["gate"]["test_map50"] == "0.8"
    assert field["devices"] == 2 and field["frames"] == compared and field["verdict_agreement"] == 0.0
    assert field["false_alarms"] == compared and field["missed_defects"] == 0
    assert next(p for p in listed["packages"] if p["arn"] == prod["arn"])["field_agreement"] is None

    # approval: the metadata keeps what the approver saw, production switches, the shadow ends
    version = cand["arn"].rsplit("/", 1)[-1]
    status, _, body = api(
        f"{base}/models/{version}/approval", "POST", approver["id"], {"decision": "Approved", "reason": "field ok"}
    )
    assert status == 200, body
    meta = sm.describe_model_package(ModelPackageName=cand["arn"])["CustomerMetadataProperties"]
    assert meta["field_shadow_frames"] == str(compared) and meta["field_shadow_devices"] == "2"
    assert meta["field_verdict_agreement"] == "0.0000" and meta["field_false_alarms"] == str(compared)
    assert meta["package_sha256"] and meta["gate"] == "passed"  # the registered digests and the gate stay
    run = finished_run(rt, cand["arn"], "approved")
    assert run["status"] == "SUCCEEDED", run.get("output") or run.get("cause")
    assert table.current_target(group)["package_arn"] == cand["arn"]
    assert table.shadow_target(group) is None
    for thing in things:
        components = device_components(rt, thing)
        assert components["com.loupe.model"]["config"]["modelVersion"] == f"cand-{tag}"
        assert "com.loupe.shadow" not in components
        assert not (components["com.loupe.inference"]["config"]["settings"].get("shadow") or {}).get("enabled")


def test_an_update_that_sets_some_metadata_keys_keeps_the_others(local_aws: Any) -> None:
    """UpdateModelPackage adds the keys it is given and removes only ``CustomerMetadataPropertiesToRemove`` (the
    local registry follows that; moto alone replaced the whole map and lost the registered digests)."""
    package = register_package(local_aws, model_version=f"meta-{uuid.uuid4().hex[:6]}", metadata={"gate": "passed"})
    sm = local_aws.client("sagemaker")
    sm.update_model_package(  # as a decision does: status, description and the new keys in one call
        ModelPackageArn=package["arn"],
        ModelApprovalStatus="PendingManualApproval",
        ApprovalDescription="looked at it, not decided",
        CustomerMetadataProperties={"field_shadow_frames": "12"},
        CustomerMetadataPropertiesToRemove=["gate"],
    )
    meta = sm.describe_model_package(ModelPackageName=package["arn"])["CustomerMetadataProperties"]
    assert meta["field_shadow_frames"] == "12" and "gate" not in meta
    assert meta["package_sha256"] == hashlib.sha256(package["archive"]).hexdigest()
