"""Offline results and a nucleus restart, on a real local core device running the real inference component.

The component publishes through its device's nucleus (the local form of IPC ``PublishToIoTCore``: accepted once
spooled) and drops a result from its own outbox at that point. With the broker unreachable, N frames' results
pile up in the nucleus' spooler; then the device (its nucleus and components) restarts and the broker comes back.
A deployment built by the workflow's step with a nucleus version (``NucleusVersion``) carries
aws.greengrass.DiskSpooler and ``mqtt.spooler`` ``storageType: Disk``: all N results arrive. Without one, the
spooler is in memory: the N results are gone, and a frame processed after the restart still gets through.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.deploy_packages import register_package
from support.edge_mqtt import LinkProxy, device_doc, outbox_depth
from support.waiting import wait_until

from loupe.deployment.components import publish_model_component
from loupe.deployment.document import start_deployment
from loupe.deployment.packages import describe_package
from loupe.settings import Settings
from loupe_local.local_auth import mqtt_login

pytestmark = pytest.mark.integration

FRAMES = int(os.environ.get("LOUPE_OFFLINE_FRAMES", "20"))  # the README's measurement ran with 500


class Results:
    """Every inference result published on the real broker, by frame file name."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-offline-{uuid.uuid4().hex[:6]}")
        mqtt_login(self.client)  # the run's credential, which the local AWS put in this process' environment
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p=None: (c.subscribe("loupe/+/inference", qos=1), ready.set())
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert ready.wait(10), "cannot subscribe to the local MQTT broker"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.seen.setdefault(json.loads(msg.payload)["source"], time.monotonic())

    def got(self, names: list[str]) -> list[str]:
        with self.lock:
            return [n for n in names if n in self.seen]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def feed(frames: Path, names: list[str]) -> None:
    from PIL import Image

    for i, name in enumerate(names):
        tmp = frames.parent / f".{name}"
        Image.new("RGB", (64, 48), (i * 9 % 255, 90, 160)).save(tmp, format="PNG")
        tmp.replace(frames / name)


def spooler(root: Path) -> dict[str, Any]:
    return (device_doc(root).get("nucleus") or {}).get("spooler") or {}


@pytest.fixture(scope="module")
def published(local_aws: Any) -> dict[str, Any]:
    """com.loupe.inference from edge_component/ and a com.loupe.model of a tiny registered model."""
    from loupe_local.devices.fleet import DeviceFleet

    rt = local_aws
    fleet = DeviceFleet.from_runtime(rt)
    inference = fleet.publish_components(rt.physical("ArtifactBucket"))
    pkg = register_package(rt)
    package = describe_package(rt.client("sagemaker"), pkg["arn"]).to_json()
    settings = Settings(artifact_bucket=rt.physical("ArtifactBucket"))
    model = publish_model_component(rt.client("greengrassv2"), rt.client("s3"), package, inference, settings)
    return {"inference": inference, "model": model, "package": package}


@pytest.fixture(scope="module")
def results(local_aws: Any) -> Iterator[Results]:
    r = Results(local_aws.mqtt["host"], int(local_aws.mqtt["port"]))
    yield r
    r.close()


@pytest.mark.parametrize(("nucleus_version", "storage"), [("2.12.6", "Disk"), ("", "Memory")])
def test_results_spooled_while_offline_and_a_nucleus_restart(
    local_aws: Any, published: dict[str, Any], results: Results, nucleus_version: str, storage: str
) -> None:
    from loupe_local.devices.fleet import DeviceFleet, device_root

    rt = local_aws
    tag = uuid.uuid4().hex[:6]
    group = f"offline-{storage.lower()}-{tag}"
    iot = rt.client("iot")
    iot.create_thing_group(thingGroupName=group)
    link = LinkProxy((rt.mqtt["host"], int(rt.mqtt["port"])))
    fleet = DeviceFleet(
        rt.state_dir,
        rt.endpoint,
        group,
        rt.region,
        {"host": "127.0.0.1", "port": link.port},
        poll_seconds=0.5,
        settle_seconds=1.5,
        ack_seconds=8.0,
        nucleus_mqtt=True,
        credentials=rt.credentials,  # the run's key, not whatever a running handler left in os.environ
    )
    thing = f"loupe-device-offline-{storage.lower()}-{tag}"
    root = device_root(rt.state_dir, thing)
    try:
        fleet.start(names=[thing])
        fleet.wait_registered([thing])
        settings = Settings(
            artifact_bucket=rt.physical("ArtifactBucket"),
            thing_group_name=group,
            nucleus_component_version=nucleus_version,
        )
        request = {**published, "run_id": f"offline-{tag}"}
        started = start_deployment(rt.client("greengrassv2"), iot, request, settings, 120)
        assert started["spooler"]["storage"] == storage, started["spooler"]
        done = wait_until(
            lambda: (device_doc(root).get("deployment") or {}).get("status") in ("SUCCEEDED", "FAILED"), 120
        )
        assert done and device_doc(root)["deployment"]["status"] == "SUCCEEDED", device_doc(root).get("deployment")
        assert spooler(root).get("storage") == storage
        if storage == "Disk":
            assert device_doc(root)["nucleus"]["plugins"] == {"aws.greengrass.DiskSpooler": "1.0.6"}

        warm = [f"warm-{tag}.png"]  # the path works while online
        feed(root / "frames", warm)
        assert wait_until(lambda: results.got(warm), 60), "no result while the device was online"

        link.cut()
        assert wait_until(lambda: spooler(root).get("connected") is False, 30)
        offline = [f"offline-{tag}-{i:02d}.png" for i in range(FRAMES)]
        feed(root / "frames", offline)
        # the component handed every result to the nucleus and dropped it from its own outbox
        work = root / "work" / "com.loupe.inference"
        assert wait_until(lambda: spooler(root).get("depth", 0) >= FRAMES and outbox_depth(work) == 0, 60), (
            spooler(root),
            outbox_depth(work),
        )
        assert not results.got(offline)

        old_pid = device_doc(root)["pid"]
        fleet.stop_device(thing)  # the nucleus (and its components) restart
        link.restore()
        t0 = time.monotonic()
        fleet.start_device(thing)
        assert wait_until(
            lambda: device_doc(root).get("pid") not in (None, old_pid) and spooler(root).get("connected"), 60
        )

        if storage == "Disk":
            assert wait_until(lambda: len(results.got(offline)) == FRAMES, 60), (
                f"{len(results.got(offline))}/{FRAMES} delivered"
            )
            drain = max(results.seen[n] for n in offline) - t0
            print(f"\n[offline results] Disk: {FRAMES}/{FRAMES} survived the restart, delivered {drain:.2f}s after it")
        else:
            marker = [f"after-{tag}.png"]
            feed(root / "frames", marker)
            # the spooler is FIFO: anything it still held from before the restart would arrive before this
            assert wait_until(lambda: results.got(marker), 60), "no result after the restart"
            assert results.got(offline) == [], "a memory spool cannot survive a restart"
            print(f"\n[offline results] Memory: 0/{FRAMES} survived the restart")
    finally:
        fleet.stop()
        link.cut()
