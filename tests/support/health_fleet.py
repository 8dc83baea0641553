"""Local Greengrass devices that send a health message every second (a device's own overlay, as a factory sets it):
what the shadow and canary tests judge on, started from the session's stack."""

from __future__ import annotations

import json
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


def deployments_store(rt: Any) -> DeploymentsStore:
    """The stack's deployments table, signed with the run's credential."""
    return DeploymentsStore(stack_table(rt, "DeploymentsTable"))
