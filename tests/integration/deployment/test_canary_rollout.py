"""The canary end to end in the local AWS: the real ASL in moto's engine, the real handlers (deployment tasks, edge
health through the IoT rule), two local core devices running the real inference component, MQTT on loopback.

The champion C (a detector that finds nothing: no frame uncertain, no NG) runs on the fleet. With CanaryPercent 50
an approval moves one of the two devices to ``<fleet>-canary`` and deploys the challenger there, while the other
keeps C; both report their frames per model in their health; after CanaryWindowFrames frames the verdict decides.

- A worse challenger W (one box at score 0.4 on every frame, inside the uncertainty band: every frame uncertain and
  NG) is rolled back by itself: the cohort serves C again and is back in the fleet's group, W is Rejected with the
  verdict and its numbers in its metadata, and the SNS message says why.
- A challenger G as good as C is promoted: the whole fleet serves it, the run succeeds.
- A person promotes a running canary by hand (``loupe canary promote``) before its window is full: the person's
  verdict wins, the record keeps the statistics' own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support import canary_fleet
from support.canary_fleet import Cameras, deploy_champion, groups_of, notifications, runs_of, serving
from support.deploy_packages import register_package, tiny_detector
from support.fixture_models import box_detector
from support.health_fleet import deployments_store, finished_run, fleet_group_of_its_own, health_fleet
from support.waiting import wait_for, wait_until

pytestmark = pytest.mark.integration

DEPLOYMENT_TIMEOUT = 60  # s: DeploymentTimeoutSeconds here (status checks from 2 s on, at most every 3 s)
WINDOW_FRAMES = 6  # this module's CanaryWindowFrames: also each cohort's minimum sample


@pytest.fixture(scope="module")
def rt(local_aws: Any) -> Iterator[Any]:
    """The session's local AWS with a thing group holding only this module's devices (members left by other modules
    are put back at the end, this module's own taken out) and the state machine's definition restored at the end."""
    sfn = local_aws.client("stepfunctions")
    arn = local_aws.arn("EdgeDeploymentStateMachine")
    original = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    try:
        with fleet_group_of_its_own(local_aws):
            yield local_aws
    finally:
        sfn.update_state_machine(stateMachineArn=arn, definition=original)


def configure(rt: Any, canary_percent: int, window_frames: int = WINDOW_FRAMES) -> None:
    """This module's parameters in the state machine's Prepare state (as a stack deployed with them would have)."""
    canary_fleet.configure(rt, canary_percent, window_frames, DEPLOYMENT_TIMEOUT)


@pytest.fixture(scope="module")
def fleet(rt: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[str]]]:
    with health_fleet(rt, tmp_path_factory.mktemp("canary-overlay"), f"loupe-device-canary{uuid.uuid4().hex[:6]}") as (
        fleet,
        names,
        _,
    ):
        yield fleet, names


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def notify_queue(rt: Any) -> str:
    return canary_fleet.notify_queue(rt, "canary-notes")


def champion(rt: Any, tag: str) -> dict[str, Any]:
    """C approved and deployed on the whole fleet the direct way, then this module's canary of 50 %."""
    prod = deploy_champion(rt, tag, DEPLOYMENT_TIMEOUT, WINDOW_FRAMES)
    configure(rt, 50)
    return prod


# ------------------------------------------------------------------ the scenarios
def test_a_worse_challenger_is_rolled_back_by_itself_with_the_reason(
    rt: Any, fleet: tuple[Any, list[str]], notify_queue: str
) -> None:
    _, things = fleet
    sm, table, group = rt.client("sagemaker"), deployments_store(rt), rt.physical("FleetThingGroup")
    tag = uuid.uuid4().hex[:6]
    prod = champion(rt, tag)
    worse = register_package(rt, onnx_bytes=box_detector(0.4), model_version=f"worse-{tag}")
    events_fn = rt.invoker.find(rt.physical("ModelPackageEventsFunction"))
    delivered = events_fn.invocations
    with Cameras(rt, things):
        sm.update_model_package(ModelPackageArn=worse["arn"], ModelApprovalStatus="Approved")
        run = finished_run(rt, worse["arn"], "approved", timeout=240)
    assert run["status"] == "FAILED" and run.get("error") == "CanaryRolledBack", run
    desc = sm.describe_model_package(ModelPackageName=worse["arn"])
    meta = desc["CustomerMetadataProperties"]
    assert desc["ModelApprovalStatus"] == "Rejected"
    assert meta["canary_verdict"] == "rollback"
    assert "uncertain_share" in meta["canary_reason"] and "higher beyond margin" in meta["canary_reason"]
    numbers = json.loads(meta["canary_numbers"])
    canary_frames, champion_frames = numbers["frames"]
    assert canary_frames >= WINDOW_FRAMES and champion_frames >= WINDOW_FRAMES
    assert numbers["uncertain"] == [f"{canary_frames}/{canary_frames}", f"0/{champion_frames}"]
    # the fleet keeps the champion everywhere, every device back in the fleet's group
    assert table.current_target(group)["package_arn"] == prod["arn"]
    for thing in things:
        assert serving(rt, thing) == f"champ-{tag}"
        assert group in groups_of(rt, thing) and f"{group}-canary" not in groups_of(rt, thing)
    assert (table.canary(group) or {}).get("status") == "ROLLED_BACK"
    # its approval and its rejection were both handled; the rejection started no run (nothing of it to undo)
    assert wait_until(lambda: events_fn.invocations >= delivered + 2, 30)
    assert len(runs_of(rt, worse["arn"])) == 1
    notes = [n for n in notifications(rt, notify_queue) if f"Package: {worse['arn']} " in n.get("Message", "")]
    assert len(notes) == 1 and "canary" in notes[0]["Subject"] and "rolled back" in notes[0]["Subject"], notes
    assert "canary rolled back" in notes[0]["Message"] and "uncertain_share" in notes[0]["Message"]


def test_a_challenger_as_good_as_the_champion_is_promoted_to_the_whole_fleet(
    rt: Any, fleet: tuple[Any, list[str]]
) -> None:
    _, things = fleet
    sm, table, group = rt.client("sagemaker"), deployments_store(rt), rt.physical("FleetThingGroup")
    tag = uuid.uuid4().hex[:6]
    champion(rt, tag)
    good = register_package(rt, onnx_bytes=tiny_detector(anchors=4), model_version=f"good-{tag}")
    with Cameras(rt, things):
        sm.update_model_package(ModelPackageArn=good["arn"], ModelApprovalStatus="Approved")
        run = finished_run(rt, good["arn"], "approved", timeout=240)
    out = json.loads(run.get("output") or "{}")
    assert run["status"] == "SUCCEEDED", run.get("cause") or out.get("summary")
    summary = out["summary"]
    assert summary["outcome"] == "COMPLETED" and summary["canary"].get("verdict") == "promote", out.get("canary")
    assert len(summary["canary"]["cohort"]) == 1 and len(summary["canary"]["rest"]) == 1
    window = summary["canary"]["window"]
    assert window["challenger"]["frames"] >= WINDOW_FRAMES and window["champion"]["frames"] >= WINDOW_FRAMES
    assert summary["canary"]["tests"] and not any(t["worse"] for t in summary["canary"]["tests"])
    assert len(runs_of(rt, good["arn"])) == 1  # one approval, one run: the promotion started no other
    assert table.current_target(group)["package_arn"] == good["arn"]
    for thing in things:
        assert serving(rt, thing) == f"good-{tag}"
        assert f"{group}-canary" not in groups_of(rt, thing)


def test_a_person_promotes_a_running_canary_by_hand(rt: Any, fleet: tuple[Any, list[str]]) -> None:
    from loupe_local import cli

    _, things = fleet
    sm, table, group = rt.client("sagemaker"), deployments_store(rt), rt.physical("FleetThingGroup")
    tag = uuid.uuid4().hex[:6]
    champion(rt, tag)
    configure(rt, 50, window_frames=100_000)  # a window no one waits for
    local_json = rt.write_state()
    challenger = register_package(rt, onnx_bytes=tiny_detector(anchors=2), model_version=f"byhand-{tag}")
    with pytest.raises(SystemExit, match="no canary waits"):  # nothing to decide yet
        cli.main(["canary", "promote", "--state", str(local_json), "--who", "line-lead"])
    sm.update_model_package(ModelPackageArn=challenger["arn"], ModelApprovalStatus="Approved")

    def running() -> dict[str, Any] | None:
        item = table.canary(group) or {}
        return item if item.get("status") == "RUNNING" and item.get("package_arn") == challenger["arn"] else None

    wait_for(running, 120, "the canary of the challenger running")
    reason = "checked the first frames of line 2 myself"
    assert cli.main(["canary", "promote", "--state", str(local_json), "--who", "line-lead", "--reason", reason]) == 0
    run = finished_run(rt, challenger["arn"], "approved", timeout=240)
    out = json.loads(run.get("output") or "{}")
    assert run["status"] == "SUCCEEDED", run.get("cause") or out.get("summary")
    summary = out["summary"]
    assert summary["canary"]["verdict"] == "promote"
    assert summary["canary"]["reasons"][0] == f"by hand: promote by line-lead: {reason}"
    assert out["canary"]["verdict"]["statistical_verdict"] == "insufficient"  # what the numbers alone said
    assert table.current_target(group)["package_arn"] == challenger["arn"]
    for thing in things:
        assert serving(rt, thing) == f"byhand-{tag}"


def test_a_canary_of_the_whole_fleet_is_judged_against_the_champions_own_frames(
    rt: Any, fleet: tuple[Any, list[str]]
) -> None:
    """CanaryPercent 100 (as a fleet of one device has): no device keeps the champion, so the champion's frames on
    the same devices before the canary are the control; the decision still runs."""
    _, things = fleet
    sm, table, group = rt.client("sagemaker"), deployments_store(rt), rt.physical("FleetThingGroup")
    tag = uuid.uuid4().hex[:6]
    champion(rt, tag)
    configure(rt, 100)
    with Cameras(rt, things):  # the champion's history first: a window's worth of frames on the fleet
        wait_for(
            lambda: (
                sum(c["frames"] for c in table.model_counters(f"champ-{tag}", things).values()) >= WINDOW_FRAMES or None
            ),
            90,
            "the champion's frames on the fleet",
        )
        good = register_package(rt, onnx_bytes=tiny_detector(anchors=6), model_version=f"whole-{tag}")
        sm.update_model_package(ModelPackageArn=good["arn"], ModelApprovalStatus="Approved")
        run = finished_run(rt, good["arn"], "approved", timeout=240)
    out = json.loads(run.get("output") or "{}")
    assert run["status"] == "SUCCEEDED", run.get("cause") or out.get("summary")
    canary = out["summary"]["canary"]
    assert sorted(canary["cohort"]) == sorted(things) and canary["rest"] == []
    assert canary["verdict"] == "promote" and canary["window"]["champion"]["frames"] >= WINDOW_FRAMES
    assert table.current_target(group)["package_arn"] == good["arn"]
    for thing in things:
        assert serving(rt, thing) == f"whole-{tag}" and f"{group}-canary" not in groups_of(rt, thing)
