"""loupe.greengrass: versions, digests, archives and the recipes built from edge_component/."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from loupe import greengrass as g

REPO = Path(__file__).resolve().parents[3]


def test_model_component_version_follows_the_package_version() -> None:
    assert g.model_component_version(7) == "1.7.0"
    assert g.model_component_version("12", patch=2) == "1.12.2"
    for bad in (0, -1, "x", None):
        with pytest.raises(g.GreengrassError):
            g.model_component_version(bad)


def test_sort_versions_is_semantic_and_drops_non_semver() -> None:
    assert g.sort_versions(["1.2.0", "1.10.0", "1.9.3", "latest", "2.0"]) == ["1.10.0", "1.9.3", "1.2.0"]


def test_greengrass_digest_is_base64_sha256(tmp_path: Path) -> None:
    data = b"model bytes"
    want = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert g.greengrass_digest(data) == want
    (tmp_path / "f").write_bytes(data)
    assert g.greengrass_digest_file(tmp_path / "f") == want


def test_deterministic_zip_depends_only_on_content() -> None:
    a = g.deterministic_zip({"b.txt": b"2", "a.txt": b"1"})
    b = g.deterministic_zip({"a.txt": b"1", "b.txt": b"2"})
    assert a == b
    assert a != g.deterministic_zip({"a.txt": b"1", "b.txt": b"3"})
    assert zipfile.ZipFile(io.BytesIO(a)).namelist() == ["a.txt", "b.txt"]


def test_inference_archive_carries_the_component_and_the_model_recipe_template() -> None:
    names = zipfile.ZipFile(io.BytesIO(g.inference_archive(REPO / "edge_component"))).namelist()
    assert g.MODEL_TEMPLATE_MEMBER in names
    assert g.MODEL_CHECK_MEMBER in names  # the model's install-time check travels with its recipe template
    assert "requirements.txt" in names and "loupe_edge/__main__.py" in names
    assert "recipe.yaml" not in names and "gdk-config.json" not in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_render_model_recipe_from_the_edge_template() -> None:
    template = (REPO / "edge_component" / "model" / "recipe.yaml").read_text()
    values = {
        "ComponentVersion": "1.4.0",
        "ModelVersion": "v4",
        "ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/4",
        "ArtifactUri": "s3://bucket/edge/artifacts/com.loupe.model/1.4.0/model.zip",
        "ModelSha256": "a" * 64,
        "ModelInt8Sha256": "",
    }
    recipe = g.render_model_recipe(template, values)
    assert recipe["ComponentName"] == g.MODEL_COMPONENT and recipe["ComponentVersion"] == "1.4.0"
    art = g.recipe_artifacts(recipe)[0]
    assert g.artifact_uri_of(art) == values["ArtifactUri"]
    assert str(art["Unarchive"]).upper() == "ZIP"
    assert recipe["ComponentConfiguration"]["DefaultConfiguration"]["modelVersion"] == "v4"
    install = recipe["Manifests"][0]["Lifecycle"]["Install"]
    assert '"$LOUPE_MODEL_DIR/check_model.py" --install' in install["Script"] and '"$PY"' in install["Script"]
    # configuration reaches the script as environment variables only; the pointer is written by check_model.py
    assert "{configuration:" not in install["Script"] and "current.json" not in install["Script"]
    assert install["Setenv"]["LOUPE_MODEL_VERSION"] == "{configuration:/modelVersion}"
    assert install["Setenv"]["LOUPE_MODEL_COMPONENT_VERSION"] == "1.4.0"
    assert install["Setenv"]["LOUPE_MODEL_POINTER"] == "{work:path}/current.json"
    missing = dict(values)
    del missing["ModelSha256"]
    with pytest.raises(g.GreengrassError, match="ModelSha256"):
        g.render_model_recipe(template, missing)


def test_render_inference_recipe_points_at_the_published_artifact() -> None:
    text = (REPO / "edge_component" / "inference" / "recipe.yaml").read_text()
    uri = "s3://bucket/edge/artifacts/com.loupe.inference/1.0.3/com.loupe.inference.zip"
    recipe = g.render_inference_recipe(text, "1.0.3", uri)
    assert recipe["ComponentVersion"] == "1.0.3"
    assert [g.artifact_uri_of(a) for a in g.recipe_artifacts(recipe)] == [uri]
    deps = recipe["ComponentDependencies"]
    assert deps[g.MODEL_COMPONENT]["DependencyType"] == "SOFT"


@pytest.mark.parametrize(
    "text, why",
    [
        ("- a list", "mapping"),
        ("RecipeFormatVersion: '2020-01-25'\nComponentName: x\n", "ComponentVersion"),
        ("RecipeFormatVersion: '2020-01-25'\nComponentName: x\nComponentVersion: '1.0'\n", "MAJOR.MINOR.PATCH"),
        ("a: [unclosed", "not valid"),
    ],
)
def test_load_recipe_refuses_bad_recipes(text: str, why: str) -> None:
    with pytest.raises(g.GreengrassError, match=why):
        g.load_recipe(text)
