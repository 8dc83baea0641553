"""Local Greengrass devices that send a health message every second (a device's own overlay, as a factory sets it):
what the shadow and canary tests judge on, started from the session's stack."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loupe.deployment.store import DeploymentsStore
from support.stack_tables import stack_table
from support.waiting import wait_for

PACKAGE_EVENT = "SageMaker Model Package State Change"
HEALTH_EVERY_SECOND = {"com.loupe.inference": {"settings": {"health": {"intervalSeconds": 1}}}}


@contextmanager
def health_fleet(
    rt: Any, folder: Path, prefix: str, count: int = 2, state: dict[str, Any] | None = None
) -> Iterator[tuple[Any, list[str], dict[str, Any]]]:
    """``count`` devices named ``<prefix>-*`` in the stack's fleet, registered; yields the fleet, their names and the
    published inference component. Stopped on exit. ``state``: the ``local.json`` of a stack running in another
    process (``rt`` is then its client-side stand-in)."""
    from loupe_local.devices.fleet import DeviceFleet

    timing = {"poll_seconds": 0.5, "settle_seconds": 1.5, "ack_seconds": 8.0, "prefix": prefix}
    fleet = (
        DeviceFleet.from_state(state, Path(rt.state_dir), **timing)
        if state is not None
        else DeviceFleet.from_runtime(rt, **timing)
    )
    inference = fleet.publish_components(rt.physical("ArtifactBucket"))
    overlay = folder / "overlay.json"
    overlay.write_text(json.dumps(HEALTH_EVERY_SECOND))
    names = fleet.names(count)
    try:
        for name in names:
            fleet.start_device(name, extra_args=["--overlay", str(overlay)])
        fleet.wait_registered(names)
        yield fleet, names, inference
    finally:
        fleet.stop()


@contextmanager
def deployment_timeout(rt: Any, seconds: int) -> Iterator[Any]:
    """The stack's edge deployment workflow with ``DeploymentTimeoutSeconds`` = ``seconds`` (its Prepare state, as a
    stack deployed with that parameter has it; status checks from 2 s after the start, less and less often, at most
    every ``seconds // 20`` s), restored at the end."""
    sfn = rt.client("stepfunctions")
    arn = rt.arn("EdgeDeploymentStateMachine")
    original = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    definition = json.loads(original)
    definition["States"]["Prepare"]["Parameters"]["timeout_seconds"] = str(seconds)
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(definition))
    try:
        yield rt
    finally:
        sfn.update_state_machine(stateMachineArn=arn, definition=original)


@contextmanager
def fleet_group_of_its_own(rt: Any) -> Iterator[None]:
    """The stack's fleet group holds only the devices a module starts: earlier members are taken out, and at the end
    the module's own devices (stopped by then, so they would never answer a later deployment) leave and the earlier
    members come back."""
    iot, group = rt.client("iot"), rt.physical("FleetThingGroup")
    members = _members(iot, group)
    for thing in members:
        iot.remove_thing_from_thing_group(thingGroupName=group, thingName=thing)
    try:
        yield
    finally:
        for thing in _members(iot, group):
            if thing not in members:
                iot.remove_thing_from_thing_group(thingGroupName=group, thingName=thing)
        for thing in members:
            iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)


@contextmanager
def thing_in_fleet(rt: Any, prefix: str) -> Iterator[str]:
    """A thing (no device behind it) in the stack's fleet group, for pages and APIs that list the fleet; it leaves
    the group and is deleted at the end — a member that never answers would hold every later deployment test."""
    iot, group = rt.client("iot"), rt.physical("FleetThingGroup")
    thing = f"{prefix}-{uuid.uuid4().hex[:6]}"
    iot.create_thing(thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    try:
        yield thing
    finally:
        iot.remove_thing_from_thing_group(thingGroupName=group, thingName=thing)
        iot.delete_thing(thingName=thing)


def _members(iot: Any, group: str) -> list[str]:
    things: list[str] = []
    for page in iot.get_paginator("list_things_in_thing_group").paginate(thingGroupName=group):
        things.extend(page["things"])
    return things


def deployments_store(rt: Any) -> DeploymentsStore:
    """The stack's deployments table, signed with the run's credential."""
    return DeploymentsStore(stack_table(rt, "DeploymentsTable"))


def finished_run(rt: Any, package_arn: str, mode: str, timeout: float = 180) -> dict[str, Any]:
    """The workflow run started for ``package_arn`` in ``mode`` (its input names them), once it has finished."""
    sfn = rt.client("stepfunctions")
    machine = rt.arn("EdgeDeploymentStateMachine")

    def done() -> dict[str, Any] | None:
        for e in sfn.list_executions(stateMachineArn=machine)["executions"]:
            described = sfn.describe_execution(executionArn=e["executionArn"])
            asked = json.loads(described.get("input") or "{}")
            if asked.get("mode") == mode and package_arn in (asked.get("package_arn"), asked.get("ended")):
                return described if described["status"] != "RUNNING" else None
        return None

    return wait_for(done, timeout, f"the finished {mode} run of {package_arn}", interval=0.5)


def registered(rt: Any, package_arn: str) -> None:
    """The registration event SageMaker sends for a new package (the pipelines stand-in sends it for the pipeline's
    RegisterModel steps; these packages are registered by the test, so it plays that part)."""
    desc = rt.client("sagemaker").describe_model_package(ModelPackageName=package_arn)
    desc.pop("ResponseMetadata", None)
    rt.emit_event("aws.sagemaker", PACKAGE_EVENT, json.loads(json.dumps(desc, default=str)), [package_arn])


def device_components(rt: Any, thing: str) -> dict[str, Any]:
    from loupe_local.devices.fleet import device_root

    return json.loads((device_root(rt.state_dir, thing) / "current.json").read_text())["components"]


def feed(rt: Any, thing: str, name: str) -> None:
    from PIL import Image

    from loupe_local.devices.fleet import device_root

    frames = device_root(rt.state_dir, thing) / "frames"
    tmp = frames.parent / f".{name}"
    Image.new("RGB", (64, 48), (120, 110, 100)).save(tmp, format="PNG")
    tmp.replace(frames / name)
