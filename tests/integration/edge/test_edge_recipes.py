"""The recipes' lifecycle scripts, run the way a Greengrass core runs them (variables interpolated, bash)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.edge_helpers import brightness_for, grey_png, write_model
from support.edge_mqtt import REPO, THING, Subscriber

from loupe.greengrass import render_model_recipe

pytestmark = pytest.mark.integration


def interpolate(script: str, variables: dict[str, str], config: dict) -> str:
    """Greengrass recipe variables: {artifacts:decompressedPath}, {work:path}, {iot:thingName}, {configuration:/x}."""

    def sub(m: re.Match) -> str:
        ns, key = m.group(1), m.group(2)
        if ns == "configuration":
            node = config
            for part in key.strip("/").split("/"):
                node = node[part]
            return json.dumps(node) if isinstance(node, dict | list) else str(node)
        return variables[f"{ns}:{key}"]

    return re.sub(r"\{(artifacts|work|iot|kernel|configuration):([^{}]+)\}", sub, script)


def lifecycle(recipe: dict, step: str) -> str:
    return recipe["Manifests"][0]["Lifecycle"][step]["Script"]


def setenv(recipe: dict, step: str, variables: dict[str, str], config: dict) -> dict[str, str]:
    """The step's ``Setenv``, its recipe variables interpolated as the nucleus does (every lifecycle string)."""
    values = recipe["Manifests"][0]["Lifecycle"][step].get("Setenv") or {}
    return {k: interpolate(str(v), variables, config) for k, v in values.items()}


def test_model_template_and_inference_recipe_run_together(tmp_path: Path, broker) -> None:
    root = tmp_path / "greengrass"
    # com.loupe.model: the deployment workflow fills the template, the core unpacks the ZIP and runs Install
    model_dir = root / "packages" / "artifacts-unarchived" / "com.loupe.model" / "1.0.3"
    write_model(model_dir / "model", "3")
    # the workflow puts the install-time check into the model ZIP
    shutil.copy(REPO / "edge_component" / "model" / "check_model.py", model_dir / "model" / "check_model.py")
    card = json.loads((model_dir / "model" / "model_card.json").read_text())
    template = (REPO / "edge_component" / "model" / "recipe.yaml").read_text()
    model_recipe = render_model_recipe(
        template,
        {
            "ComponentVersion": "1.0.3",
            "ModelVersion": "3",
            "ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe/3",
            "ArtifactUri": "s3://artifacts/edge/artifacts/com.loupe.model/1.0.3/model.zip",
            "ModelSha256": card["sha256"]["model.onnx"],
            "ModelInt8Sha256": "",
        },
    )
    assert model_recipe["ComponentVersion"] == "1.0.3"
    assert model_recipe["Manifests"][0]["Artifacts"][0]["Unarchive"] == "ZIP"
    model_work = root / "work" / "com.loupe.model"
    model_work.mkdir(parents=True)
    model_vars = {
        "artifacts:decompressedPath": str(model_dir),
        "work:path": str(model_work),
        "kernel:rootPath": str(root),
    }
    model_config = model_recipe["ComponentConfiguration"]["DefaultConfiguration"]
    install = interpolate(lifecycle(model_recipe, "Install"), model_vars, model_config)
    env = {
        **os.environ,
        **setenv(model_recipe, "Install", model_vars, model_config),
        "LOUPE_EDGE_PYTHON": sys.executable,  # an interpreter with onnxruntime, as on a device
    }
    done = subprocess.run(["bash", "-c", install], check=True, capture_output=True, text=True, env=env)
    assert "digests ok: model.onnx" in done.stdout and "smoke inference ok" in done.stdout
    pointer = json.loads((model_work / "current.json").read_text())
    assert pointer["dir"] == str(model_dir) and pointer["version"] == "3"
    assert pointer["sha256"]["model.onnx"] == card["sha256"]["model.onnx"]

    # com.loupe.inference: artifacts as the GDK zip unpacks them, then Install and Run
    recipe = yaml.safe_load((REPO / "edge_component" / "inference" / "recipe.yaml").read_text())
    deps = recipe["ComponentDependencies"]
    assert deps["com.loupe.model"]["DependencyType"] == "SOFT"
    acl = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.mqttproxy"]
    (policy,) = acl.values()
    assert sorted(policy["resources"]) == sorted(
        f"loupe/{{iot:thingName}}/{t}" for t in ("inference", "low-confidence", "health")
    )
    assert recipe["Manifests"][0]["Lifecycle"]["Install"]["Timeout"] >= 600
    art = root / "packages" / "artifacts-unarchived" / "com.loupe.inference" / "1.0.0" / "com.loupe.inference"
    shutil.copytree(REPO / "edge_component" / "inference", art, ignore=shutil.ignore_patterns("__pycache__"))
    work = root / "work" / "com.loupe.inference"
    work.mkdir(parents=True)
    frames = tmp_path / "frames"
    config = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    config["settings"]["source"]["path"] = str(frames)
    config["settings"]["source"]["settleMs"] = 50
    config["settings"]["feedback"]["enabled"] = False
    config["settings"]["health"]["intervalSeconds"] = 1
    variables = {
        "artifacts:decompressedPath": str(art.parent),
        "work:path": str(work),
        "iot:thingName": THING,
    }
    env = {
        **os.environ,
        "LOUPE_EDGE_PYTHON": sys.executable,  # the local core reuses the project's interpreter
        "LOUPE_TRANSPORT": "mqtt",
        "LOUPE_MQTT_HOST": broker.host,
        "LOUPE_MQTT_PORT": str(broker.port),
        "LOUPE_MQTT_USERNAME": broker.username,  # the broker refuses anonymous clients
        "LOUPE_MQTT_PASSWORD": broker.password,
    }
    env.pop("PYTHONPATH", None)
    out = subprocess.run(
        ["bash", "-c", interpolate(lifecycle(recipe, "Install"), variables, config)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "no venv built" in out.stdout
    sub = Subscriber(broker.host, broker.port, login=(broker.username, broker.password))
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "-c", interpolate(lifecycle(recipe, "Run"), variables, config)],
        env={**env, **setenv(recipe, "Run", variables, config)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        frames.mkdir(exist_ok=True)
        data = grey_png(brightness_for(0.05, 64))
        (frames / "one.png").write_bytes(data)
        ok = sub.wait(lambda s: s.of("inference"), 60)
        assert ok, (tmp_path / "run.log").read_text()
        (result,) = sub.of("inference")
        assert result["model_version"] == "3" and result["thing"] == THING
        assert hashlib.sha256(data).hexdigest()[:12] in result["frame_id"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        sub.close()
