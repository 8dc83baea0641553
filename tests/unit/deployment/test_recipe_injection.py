"""A model card's ``version`` (or any value that reaches a recipe) used as a shell payload on every device.

The attack: the registered digests vouch for a package's bytes, not for what its card says, and the nucleus
substitutes ``{configuration:/...}`` into lifecycle text before the shell reads it. So: (a) registration refuses
the card, (b) the deployment refuses a package whose card or metadata was changed after registration, (c) with
every check bypassed, the recipe still gives the value to the device as data: the payload never runs.
"""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws
from support.archives import tar_gz
from support.deploy_packages import tiny_detector
from support.device_fakes import FakeControlPlane

from loupe import greengrass as g
from loupe import recipe_values
from loupe.deployment.errors import PackageInvalid
from loupe.deployment.packages import check_recipe_values, describe_package
from loupe.deployment.verification import verify
from loupe_local.devices.runtime import Device, DeviceOptions
from loupe_training import export as ex
from loupe_training.jobs import check_registration

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = (REPO / "edge_component" / "model" / "recipe.yaml").read_text()
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/7"


def payload(tmp_path: Path) -> str:
    return f"1'; touch {tmp_path}/pwned; echo '"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ (a) registration
def test_training_refuses_to_write_a_card_whose_version_is_a_shell_payload(tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    card = ex.model_card(
        manifest={"version": 1, "digest": "d" * 64, "class_map": {"0": "scratch"}},
        hyperparameters={},
        metrics={},
        imgsz=32,
        artifacts={"model.onnx": onnx},
        code_version="test",
        int8={"kept": False},
        extra={"version": payload(tmp_path)},
    )
    with pytest.raises(recipe_values.RecipeValueError, match="model card version"):
        ex.write_card(tmp_path / "model_card.json", card)
    assert not (tmp_path / "model_card.json").exists()  # nothing to package, nothing registered
    card["version"] = "7"
    assert json.loads(ex.write_card(tmp_path / "model_card.json", card).read_text())["version"] == "7"


def test_the_register_step_gets_no_digest_off_its_whitelist() -> None:
    gate = {k: "a" * 64 for k in recipe_values.DIGEST_KEYS} | {"model_int8_sha256": "none"}
    check_registration(gate)
    with pytest.raises(recipe_values.RecipeValueError, match="metadata model_sha256"):
        check_registration({**gate, "model_sha256": "a' ; reboot ; '"})


# ------------------------------------------------------------------ (b) deployment
class Registry:
    """describe_model_package of one package, whose metadata a test changes after registration."""

    def __init__(self, url: str, metadata: dict[str, str]) -> None:
        self.url, self.metadata = url, metadata

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        return {
            "ModelPackageArn": ARN,
            "ModelPackageGroupName": "loupe-models",
            "ModelPackageVersion": 7,
            "ModelApprovalStatus": "Approved",
            "InferenceSpecification": {"Containers": [{"ModelDataUrl": self.url}]},
            "CustomerMetadataProperties": self.metadata,
        }


def package_files(version: Any) -> tuple[bytes, bytes, bytes]:
    model = tiny_detector()
    card = json.dumps({"version": version, "artifacts": {"model.onnx": {"sha256": sha(model)}}}).encode()
    return model, card, tar_gz({"model.onnx": model, "model_card.json": card})


@mock_aws
def test_the_deployment_refuses_a_card_rewritten_after_registration(tmp_path: Path) -> None:
    """The package is swapped for one whose card carries the payload, and the registered digests are updated to
    match (UpdateModelPackage): every digest checks out, the card's version is refused before any recipe exists."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="artifacts")
    url = "s3://artifacts/models/7/model.tar.gz"
    model, card, archive = package_files(payload(tmp_path))
    s3.put_object(Bucket="artifacts", Key="models/7/model.tar.gz", Body=archive)
    metadata = {"package_sha256": sha(archive), "model_sha256": sha(model), "model_card_sha256": sha(card)}
    package = describe_package(Registry(url, metadata), ARN)
    check_recipe_values(package)  # the registry's values are fine: only the card says otherwise
    with pytest.raises(PackageInvalid, match=r"model_card.json refused: model card version .*touch"):
        verify(s3, package.to_json())
    # the same package with a plain version goes through
    model, card, archive = package_files("7")
    s3.put_object(Bucket="artifacts", Key="models/7/model.tar.gz", Body=archive)
    metadata = {"package_sha256": sha(archive), "model_sha256": sha(model), "model_card_sha256": sha(card)}
    assert verify(s3, describe_package(Registry(url, metadata), ARN).to_json())["package_sha256"] == sha(archive)


@pytest.mark.parametrize(
    "change, refused",
    [
        ({"model_sha256": "a'; touch /tmp/pwned; echo '"}, "metadata model_sha256"),
        ({"package_sha256": "A" * 64}, "metadata package_sha256"),
        ({"evaluation_uri": "s3://artifacts/x'$(reboot)'"}, "metadata evaluation_uri"),
    ],
)
def test_the_deployment_refuses_metadata_changed_after_registration(change: dict[str, str], refused: str) -> None:
    metadata = {"package_sha256": "a" * 64, "model_sha256": "b" * 64, **change}
    package = describe_package(Registry("s3://artifacts/models/7/model.tar.gz", metadata), ARN)
    with pytest.raises(PackageInvalid, match=refused):
        check_recipe_values(package)


def test_the_recipe_renderer_refuses_values_off_their_whitelist(tmp_path: Path) -> None:
    values = {
        "ComponentVersion": "1.7.0",
        "ModelVersion": "7",
        "ModelPackageArn": ARN,
        "ArtifactUri": "s3://artifacts/edge/artifacts/com.loupe.model/1.7.0/model.zip",
        "ModelSha256": "a" * 64,
        "ModelInt8Sha256": "",
    }
    assert g.render_model_recipe(TEMPLATE, values)["ComponentVersion"] == "1.7.0"
    for name, bad in [
        ("ModelVersion", payload(tmp_path)),
        ("ModelVersion", '7"\nLifecycle: {}'),  # a YAML break-out
        ("ComponentVersion", "1.7.0'; reboot; '"),
        ("ModelPackageArn", ARN + "'"),
        ("ArtifactUri", "s3://artifacts/a b"),
        ("ModelInt8Sha256", "none'"),
    ]:
        with pytest.raises(g.GreengrassError, match=name):
            g.render_model_recipe(TEMPLATE, {**values, name: bad})


def test_no_recipe_splices_configuration_into_a_script() -> None:
    """Both edge recipes, as published; and a recipe that would is refused by name."""
    inference = g.render_inference_recipe(
        (REPO / "edge_component" / "inference" / "recipe.yaml").read_text(), "1.0.0", "s3://b/k.zip"
    )
    for recipe in (inference, yaml.safe_load(TEMPLATE)):
        for where, script in g.lifecycle_scripts(recipe):
            assert "configuration:" not in script, where
    spliced = {**inference, "Manifests": [{"Lifecycle": {"Run": "echo '{configuration:/settings}'"}}]}
    with pytest.raises(g.GreengrassError, match=r"Manifests\[0\].Lifecycle.Run splices component configuration"):
        g.check_scripts(spliced)


# ------------------------------------------------------------------ (c) on a local core device, checks bypassed
@pytest.fixture
def device(tmp_path: Path) -> Any:
    dev = Device(
        DeviceOptions(
            thing="t1", root=tmp_path / "gg", endpoint="http://127.0.0.1:9", settle_seconds=0.3, ack_seconds=1.5
        ),
        FakeControlPlane(),
    )
    yield dev
    dev.shutdown()


def unchecked_model_component(dev: Any, version: str, model_version: str) -> dict[str, Any]:
    """``com.loupe.model`` built the way the workflow builds it, with no whitelist in the way: the template filled
    as text (what a careless renderer does), its ZIP placed where the device would have downloaded it."""
    model = tiny_detector()
    card = json.dumps({"class_map": {"0": "scratch"}, "imgsz": 32}).encode()
    check = (REPO / "edge_component" / "model" / "check_model.py").read_bytes()
    archive = g.deterministic_zip({"model.onnx": model, "model_card.json": card, "check_model.py": check})
    values = {
        "ComponentVersion": version,
        "ModelVersion": model_version,
        "ModelPackageArn": ARN,
        "ArtifactUri": f"s3://artifacts/edge/artifacts/com.loupe.model/{version}/model.zip",
        "ModelSha256": sha(model),
        "ModelInt8Sha256": "",
    }
    recipe = yaml.safe_load(string.Template(TEMPLATE).safe_substitute(values))
    for art in g.recipe_artifacts(recipe):
        art["Algorithm"], art["Digest"] = "SHA-256", g.greengrass_digest(archive)
    target = dev.layout.artifacts(g.MODEL_COMPONENT, version) / "model.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(archive)
    dev.control.gg.add(recipe)
    return recipe


def apply(dev: Any, dep_id: str, version: str, merge: dict[str, Any] | None = None) -> tuple[str, str]:
    spec: dict[str, Any] = {"componentVersion": version}
    if merge:
        spec["configurationUpdate"] = {"merge": json.dumps(merge)}
    dev.apply(
        {
            "deploymentId": dep_id,
            "components": {g.MODEL_COMPONENT: spec},
            "deploymentPolicies": {"failureHandlingPolicy": "ROLLBACK"},
        }
    )
    final = [r for r in dev.control.reports if r[0] == f"/deployments/{dep_id}/status" and r[1] != "IN_PROGRESS"]
    return final[-1][1], final[-1][2]


def pointer(dev: Any) -> dict[str, Any]:
    return json.loads((dev.layout.work(g.MODEL_COMPONENT) / "current.json").read_text())


def test_a_payload_in_the_card_version_never_runs_on_a_device(device: Any, tmp_path: Path) -> None:
    bad = payload(tmp_path)
    unchecked_model_component(device, "1.7.0", bad)
    outcome, reason = apply(device, "d1", "1.7.0")
    assert outcome == "SUCCEEDED", reason
    assert not (tmp_path / "pwned").exists()
    # the value arrived as data: the pointer carries it verbatim
    assert pointer(device)["version"] == bad
    assert pointer(device)["component_version"] == "1.7.0"


def test_a_payload_in_a_deployment_configuration_update_never_runs_either(device: Any, tmp_path: Path) -> None:
    unchecked_model_component(device, "1.8.0", "8")
    bad = payload(tmp_path)
    outcome, reason = apply(device, "d1", "1.8.0", merge={"modelVersion": bad})
    assert outcome == "SUCCEEDED", reason
    assert not (tmp_path / "pwned").exists()
    assert pointer(device)["version"] == bad
    assert pointer(device)["sha256"] == {"model.onnx": sha(tiny_detector()), "model_int8.onnx": ""}
