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

HEALTH_EVERY_SECOND = {"com.loupe.inference": {"settings": {"health": {"intervalSeconds": 1}}}}


@contextmanager
def health_fleet(rt: Any, folder: Path, prefix: str, count: int = 2) -> Iterator[tuple[Any, list[str], dict[str, Any]]]:
    """``count`` devices named ``<prefix>-*`` in the stack's fleet, registered; yields the fleet, their names and the
    published inference component. Stopped on exit."""
    from loupe_local.devices import DeviceFleet

    fleet = DeviceFleet.from_runtime(rt, poll_seconds=0.5, settle_seconds=1.5, ack_seconds=8.0, prefix=prefix)
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
