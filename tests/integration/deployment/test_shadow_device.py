"""A candidate beside production on a real local core device: one deployment carries ``com.loupe.model`` (production),
``com.loupe.shadow`` (the candidate, installed by the same digest-and-smoke check) and the inference component's
``settings.shadow`` block; the device's health messages then carry the candidate's agreement counters, while every
result still comes from production.

Production is a detector that finds nothing; the candidate finds one confident box on every frame. On the frames the
candidate runs on (every 2nd), production says OK and the candidate NG: the counters must say exactly that.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.deploy_packages import register_package, tiny_detector
from support.edge_mqtt import Subscriber, device_doc
from support.fixture_models import box_detector
from support.waiting import wait_until

from loupe import greengrass as gg_mod
from loupe.deployment.components import publish_model_component
from loupe.deployment.document import start_deployment
from loupe.deployment.packages import describe_package
from loupe.edge_metrics import parse_health
from loupe.settings import Settings
from loupe_local.local_auth import MQTT_USERNAME, mqtt_password

pytestmark = pytest.mark.integration

FRAMES = 6
EVERY_NTH = 2


def feed(frames: Path, name: str) -> None:
    from PIL import Image

    tmp = frames.parent / f".{name}"
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp, format="PNG")
    tmp.replace(frames / name)


def test_a_deployment_with_a_shadow_block_makes_the_devices_health_carry_the_candidates_counters(
    local_aws: Any, tmp_path: Path
) -> None:
    from loupe_local.devices.fleet import DeviceFleet, device_root

    rt = local_aws
    tag = uuid.uuid4().hex[:6]
    thing = f"loupe-device-shadow-{tag}"
    group = f"shadow-{tag}"
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
        nucleus_mqtt=True,
        credentials=rt.credentials,  # the run's key, not whatever a running handler left in os.environ
    )
    # this device's own setting (a local overlay, as a factory sets a device's frame folder): health every second
    overlay = tmp_path / "overlay.json"
    overlay.write_text(json.dumps({"com.loupe.inference": {"settings": {"health": {"intervalSeconds": 1}}}}))
    root = device_root(rt.state_dir, thing)
    login = (MQTT_USERNAME, mqtt_password(rt.credentials))  # the run's key, as the fleet's above
    seen = Subscriber(rt.mqtt["host"], int(rt.mqtt["port"]), thing=thing, login=login)
    gg, s3, sm = rt.client("greengrassv2"), rt.client("s3"), rt.client("sagemaker")
    settings = Settings(artifact_bucket=rt.physical("ArtifactBucket"), thing_group_name=group)
    try:
        fleet.start_device(thing, extra_args=["--overlay", str(overlay)])
        fleet.wait_registered([thing])
        inference = fleet.publish_components(rt.physical("ArtifactBucket"))
        prod_pkg = register_package(rt, onnx_bytes=tiny_detector(anchors=8), model_version=f"prod-{tag}")
        cand_pkg = register_package(rt, onnx_bytes=box_detector(0.9), model_version=f"cand-{tag}")
        prod_json = describe_package(sm, prod_pkg["arn"]).to_json()
        production = publish_model_component(gg, s3, prod_json, inference, settings)
        candidate = publish_model_component(
            gg, s3, describe_package(sm, cand_pkg["arn"]).to_json(), inference, settings, gg_mod.SHADOW_COMPONENT
        )
        assert candidate["name"] == "com.loupe.shadow" and candidate["model_version"] == f"cand-{tag}"
        request = {
            "package": prod_json,
            "model": production,
            "inference": inference,
            "shadow": {"model": candidate, "every_nth_frame": EVERY_NTH},
            "run_id": f"shadow-{tag}",
        }
        started = start_deployment(gg, iot, request, settings, 120)

        def finished() -> bool:
            dep = device_doc(root).get("deployment") or {}
            return dep.get("id") == started["deployment_id"] and dep.get("status") in ("SUCCEEDED", "FAILED")

        assert wait_until(finished, 120), device_doc(root).get("deployment")
        assert device_doc(root)["deployment"]["status"] == "SUCCEEDED", device_doc(root)["deployment"]
        # the candidate's own install check wrote its pointer in its own work folder
        pointer = json.loads((root / "work" / "com.loupe.shadow" / "current.json").read_text())
        assert pointer["version"] == f"cand-{tag}"

        def candidate_running() -> bool:
            shadows = [h.get("shadow") or {} for h in seen.of("health")]
            return any(s.get("state") == "running" for s in shadows)

        assert wait_until(candidate_running, 60), [h.get("shadow") for h in seen.of("health")][-3:]
        for i in range(FRAMES):
            feed(root / "frames", f"frame-{i}-{tag}.png")
        assert seen.wait(lambda s: len(s.of("inference")) >= FRAMES, 60), len(seen.of("inference"))

        def windows() -> list[dict]:
            return [h["shadow"] for h in seen.of("health") if (h.get("shadow") or {}).get("production_frames")]

        assert wait_until(lambda: sum(w["production_frames"] for w in windows()) >= FRAMES, 30), windows()
        assert {r["model_version"] for r in seen.of("inference")} == {f"prod-{tag}"}  # production drives results
        assert all(r["verdict"] == "pass" for r in seen.of("inference"))
        got = windows()
        total = {k: sum(w[k] for w in got) for k in ("production_frames", "frames", "errors")}
        assert total == {"production_frames": FRAMES, "frames": FRAMES // EVERY_NTH, "errors": 0}, got
        assert sum(w["verdict"]["ok_ng"] for w in got) == FRAMES // EVERY_NTH  # production OK, candidate NG
        assert sum(w["boxes"]["shadow"] for w in got) == FRAMES // EVERY_NTH
        assert sum(w["boxes"]["matched"] for w in got) == 0 and sum(w["boxes"]["production"] for w in got) == 0
        for w in got:
            assert w["model_version"] == f"cand-{tag}" and w["model_package_arn"] == cand_pkg["arn"]
            assert w["every_nth_frame"] == EVERY_NTH and w["state"] == "running"
        # what the cloud's health handler parses: the device's real message passes the strict model
        message = next(h for h in seen.of("health") if (h.get("shadow") or {}).get("frames"))
        parsed = parse_health({**message, "topic": f"loupe/{thing}/health", "source_thing": thing})
        assert parsed.shadow is not None and parsed.shadow.frames >= 1
    finally:
        fleet.stop()
        seen.close()
