"""Model N, then model N+1, on a real local core device through the workflow's own deployment step.

A core device keeps a component's configuration when a deployment brings a new version whose DefaultConfiguration
differs; only the deployment's ``configurationUpdate`` changes it (Greengrass developer guide, "Update component
configurations"; "Troubleshooting"). ``com.loupe.model``'s Install checks the files against the digests in its
configuration: if model N+1 were sent with its recipe defaults alone, its check would run against model N's digest,
fail and roll back. The device publishes through its nucleus (IPC ``PublishToIoTCore``), whose authorization
needs ``interpolateComponentConfiguration`` for the inference component's ``loupe/{iot:thingName}/...`` policy:
the results of both models arriving on the broker show that the deployment set it.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.deploy_packages import register_package, tiny_detector
from support.edge_mqtt import device_doc
from support.waiting import wait_until

from loupe.deployment.components import publish_model_component
from loupe.deployment.document import start_deployment
from loupe.deployment.packages import describe_package
from loupe.settings import Settings
from loupe_local.local_auth import mqtt_login

pytestmark = pytest.mark.integration


class Results:
    """The inference results published on the real broker for one thing: frame name -> model version."""

    def __init__(self, host: str, port: int, thing: str) -> None:
        import paho.mqtt.client as mqtt

        self.seen: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-modelcfg-{uuid.uuid4().hex[:6]}")
        mqtt_login(self.client)
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p=None: (
            c.subscribe(f"loupe/{thing}/inference", qos=1),
            ready.set(),
        )
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert ready.wait(10), "cannot subscribe to the local MQTT broker"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        doc = json.loads(msg.payload)
        with self.lock:
            self.seen[doc["source"]] = doc.get("model_version")

    def version_of(self, name: str) -> Any:
        with self.lock:
            return self.seen.get(name)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def feed(frames: Path, name: str) -> None:
    from PIL import Image

    tmp = frames.parent / f".{name}"
    Image.new("RGB", (64, 48), (30, 90, 160)).save(tmp, format="PNG")
    tmp.replace(frames / name)


def test_model_n_plus_1_installs_against_its_own_digest_and_the_nucleus_lets_results_through(local_aws: Any) -> None:
    from loupe_local.devices.fleet import DeviceFleet, device_root

    rt = local_aws
    tag = uuid.uuid4().hex[:6]
    group = thing = f"modelcfg-{tag}"
    iot = rt.client("iot")
    iot.create_thing_group(thingGroupName=group)
    fleet = DeviceFleet(
        rt.state_dir,
        rt.endpoint,
        group,
        rt.region,
        rt.mqtt,
        poll_seconds=0.5,
        settle_seconds=1.5,
        ack_seconds=8.0,
        nucleus_mqtt=True,  # components publish through the nucleus' IPC, which authorizes each publish
        credentials=rt.credentials,  # the run's key, not whatever a running handler left in os.environ
    )
    root = device_root(rt.state_dir, thing)
    results = Results(rt.mqtt["host"], int(rt.mqtt["port"]), thing)
    gg, s3, sm = rt.client("greengrassv2"), rt.client("s3"), rt.client("sagemaker")
    # NucleusVersion empty: the version comes from what the group's device reports (GetCoreDevice coreVersion)
    settings = Settings(artifact_bucket=rt.physical("ArtifactBucket"), thing_group_name=group)
    try:
        fleet.start(names=[thing])
        fleet.wait_registered([thing])
        inference = fleet.publish_components(rt.physical("ArtifactBucket"))
        served = []
        for n, anchors in enumerate((8, 16)):  # two models with different bytes, hence different digests
            pkg = register_package(rt, onnx_bytes=tiny_detector(anchors=anchors), model_version=f"m{n}-{tag}")
            package = describe_package(sm, pkg["arn"]).to_json()
            model = publish_model_component(gg, s3, package, inference, settings)
            request = {"package": package, "model": model, "inference": inference, "run_id": f"modelcfg-{tag}-{n}"}
            started = start_deployment(gg, iot, request, settings, 120)
            assert started["ipc"]["interpolation"] is True, started["ipc"]

            def finished(dep_id: str = started["deployment_id"]) -> bool:
                dep = device_doc(root).get("deployment") or {}
                return dep.get("id") == dep_id and dep.get("status") in ("SUCCEEDED", "FAILED")

            assert wait_until(finished, 120), device_doc(root).get("deployment")
            assert device_doc(root)["deployment"]["status"] == "SUCCEEDED", device_doc(root)["deployment"]
            saved = json.loads((root / "current.json").read_text())["components"]["com.loupe.model"]
            assert saved["version"] == model["version"]
            assert saved["config"]["modelVersion"] == model["model_version"]
            frame = f"frame-{n}-{tag}.png"
            feed(root / "frames", frame)
            assert wait_until(lambda f=frame, v=model["model_version"]: results.version_of(f) == v, 60), (
                results.seen,
                device_doc(root).get("components"),
            )
            served.append(model["model_version"])
        assert served == [f"m0-{tag}", f"m1-{tag}"]
    finally:
        fleet.stop()
        results.close()
