"""loupe_local.devices.recipes: configuration, interpolation, lifecycle steps and verified artifacts."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from loupe.greengrass import greengrass_digest
from loupe_local.devices import recipes as r


def recipe(**extra: Any) -> dict[str, Any]:
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.loupe.inference",
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": {"DefaultConfiguration": {"settings": {"a": 1, "nested": {"x": "d"}}, "flag": True}},
        "ComponentDependencies": {"com.loupe.model": {"DependencyType": "SOFT"}, "aws.greengrass.Nucleus": {}},
        "Manifests": [
            {"Platform": {"os": "windows"}, "Lifecycle": {"Run": "windows only"}},
            {
                "Platform": {"os": "linux"},
                "Lifecycle": {"Run": {"Script": "run", "Setenv": {"K": "V"}}, "Install": "i"},
            },
        ],
        **extra,
    }


def test_configuration_is_defaults_then_reset_and_merge_then_the_device_overlay() -> None:
    rec = recipe()
    update = {"merge": json.dumps({"settings": {"a": 2, "nested": {"y": "m"}}})}
    cfg = r.effective_config(rec, update, {"settings": {"nested": {"x": "device"}}})
    assert cfg == {"settings": {"a": 2, "nested": {"x": "device", "y": "m"}}, "flag": True}
    cfg = r.effective_config(rec, {"reset": ["/settings/a"], "merge": {"settings": {"b": 3}}}, None)
    assert cfg["settings"] == {"a": 1, "nested": {"x": "d"}, "b": 3}
    with pytest.raises(r.RecipeError, match="not JSON"):
        r.effective_config(rec, {"merge": "{nope"}, None)


def test_interpolation_of_recipe_variables(tmp_path: Path) -> None:
    layout = r.Layout(tmp_path)
    model = r.Component("com.loupe.model", "1.3.0", {}, {"modelVersion": "v3"})
    me = r.Component("com.loupe.inference", "1.0.0", recipe(), {"settings": {"a": 2}, "flag": False})
    text = (
        "{artifacts:path}|{artifacts:decompressedPath}|{work:path}|{iot:thingName}|{kernel:rootPath}|"
        "{configuration:/settings}|{configuration:/flag}|{configuration:/missing}|"
        "{com.loupe.model:artifacts:decompressedPath}|{com.loupe.model:configuration:/modelVersion}|"
        '{other.component:work:path}|{"dir": 1}'
    )
    out = r.interpolate(text, me, {"com.loupe.model": model}.get, layout, "thing-1").split("|")
    assert out[0] == str(tmp_path / "packages/artifacts/com.loupe.inference/1.0.0")
    assert out[1] == str(tmp_path / "packages/artifacts-unarchived/com.loupe.inference/1.0.0")
    assert out[2] == str(tmp_path / "work/com.loupe.inference")
    assert out[3:5] == ["thing-1", str(tmp_path)]
    assert json.loads(out[5]) == {"a": 2}
    assert out[6:8] == ["false", ""]
    assert out[8] == str(tmp_path / "packages/artifacts-unarchived/com.loupe.model/1.3.0")
    assert out[9] == "v3"
    assert out[10] == "{other.component:work:path}"  # not a dependency: left as is
    assert out[11] == '{"dir": 1}'


def test_manifest_and_lifecycle_steps() -> None:
    comp = r.Component("c", "1.0.0", recipe())
    assert comp.lifecycle["Install"] == "i"
    assert r.step_of(comp.lifecycle, "install") == ("i", 120, {}, "")
    script, timeout, setenv, _ = r.step_of(comp.lifecycle, "Run")
    assert (script, timeout, setenv) == ("run", None, {"K": "V"})
    assert r.step_of(comp.lifecycle, "Shutdown")[0] == ""
    assert comp.soft_dependencies() == {"com.loupe.model"}
    with pytest.raises(r.RecipeError, match="no manifest for platform linux"):
        r.select_manifest({"ComponentName": "w", "Manifests": [{"Platform": {"os": "windows"}}]})


class FakeS3:
    def __init__(self, objects: dict[str, bytes], denied: set[str] | None = None) -> None:
        self.objects = objects
        self.downloads = 0
        self.calls: list[str] = []
        self.denied = denied or set()

    def get_bucket_location(self, Bucket: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append(f"GetBucketLocation {Bucket}")
        if "GetBucketLocation" in self.denied:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetBucketLocation")
        return {"LocationConstraint": None}

    def download_file(self, bucket: str, key: str, dest: str) -> None:
        self.calls.append(f"GetObject {bucket}/{key}")
        self.downloads += 1
        Path(dest).write_bytes(self.objects[f"{bucket}/{key}"])


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def model_component(data: bytes, digest: str) -> r.Component:
    rec = {
        "ComponentName": "com.loupe.model",
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Artifacts": [{"URI": "s3://b/edge/model.zip", "Unarchive": "ZIP", "Digest": digest}],
            }
        ],
    }
    return r.Component("com.loupe.model", "1.2.0", rec)


def test_artifacts_are_verified_then_unarchived_once(tmp_path: Path) -> None:
    data = zip_of({"model.onnx": b"m", "model_card.json": b"{}"})
    s3 = FakeS3({"b/edge/model.zip": data})
    layout = r.Layout(tmp_path)
    comp = model_component(data, greengrass_digest(data))
    assert r.fetch_artifacts(comp, layout, s3) == ["downloaded model.zip", "unarchived model.zip"]
    assert (layout.unarchived("com.loupe.model", "1.2.0") / "model" / "model.onnx").read_bytes() == b"m"
    assert r.fetch_artifacts(comp, layout, s3) == []
    assert s3.downloads == 1


def test_the_bucket_is_located_before_the_download_and_a_denial_fails_with_the_documented_code(
    tmp_path: Path,
) -> None:
    data = zip_of({"model.onnx": b"m"})
    s3 = FakeS3({"b/edge/model.zip": data})
    r.fetch_artifacts(model_component(data, greengrass_digest(data)), r.Layout(tmp_path / "ok"), s3)
    assert s3.calls == ["GetBucketLocation b", "GetObject b/edge/model.zip"]
    denied = FakeS3({"b/edge/model.zip": data}, denied={"GetBucketLocation"})
    with pytest.raises(r.RecipeError, match="S3_GET_BUCKET_LOCATION_ACCESS_DENIED"):
        r.fetch_artifacts(model_component(data, greengrass_digest(data)), r.Layout(tmp_path / "no"), denied)
    assert denied.calls == ["GetBucketLocation b"]  # nothing downloaded


def test_an_artifact_that_does_not_match_the_recipe_digest_is_refused(tmp_path: Path) -> None:
    data = zip_of({"model.onnx": b"m"})
    s3 = FakeS3({"b/edge/model.zip": data + b"tampered"})
    layout = r.Layout(tmp_path)
    with pytest.raises(r.RecipeError, match="does not match the recipe"):
        r.fetch_artifacts(model_component(data, greengrass_digest(data)), layout, s3)
    assert list(layout.artifacts("com.loupe.model", "1.2.0").iterdir()) == []


def test_unsafe_zip_entries_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(zip_of({"../escape.txt": b"x"}))
    with pytest.raises(r.RecipeError, match="unsafe entry"):
        r.safe_unzip(bad, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_a_backslash_walk_in_a_zip_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(zip_of({"model.onnx": b"m", "..\\..\\escape.txt": b"x"}))
    with pytest.raises(r.RecipeError, match=r"unsafe entry: key '\.\.\\\\\.\.\\\\escape\.txt' escapes"):
        r.safe_unzip(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "version"), [("../../escape", "1.0.0"), ("com.loupe.model", "../../../escape")])
def test_a_component_name_or_version_leaving_the_device_folders_is_refused(
    tmp_path: Path, name: str, version: str
) -> None:
    data = zip_of({"model.onnx": b"m"})
    s3 = FakeS3({"b/edge/model.zip": data})
    comp = model_component(data, greengrass_digest(data))
    comp = r.Component(name, version, comp.recipe)
    with pytest.raises(r.RecipeError, match="escapes"):
        r.fetch_artifacts(comp, r.Layout(tmp_path / "device"), s3)
    assert s3.downloads == 0
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_new_version_keeps_the_configuration_on_the_device_and_only_adds_new_default_keys() -> None:
    """The nucleus merges a recipe's DefaultConfiguration under the device's configuration (oldest timestamp): a
    new component version with other defaults changes nothing that is there; only reset and merge do."""
    on_device = {"settings": {"a": 1, "nested": {"x": "d"}}, "flag": True, "digest": "old"}
    new = recipe(ComponentConfiguration={"DefaultConfiguration": {"settings": {"a": 9, "new": "n"}, "digest": "new"}})
    kept = r.effective_config(new, None, None, on_device)
    assert kept == {"settings": {"a": 1, "nested": {"x": "d"}, "new": "n"}, "flag": True, "digest": "old"}
    # reset then merge, in that order: a reset key takes the new default (or goes), then the merge applies
    update = {"reset": ["/digest", "/flag", "/settings/nested"], "merge": json.dumps({"settings": {"b": 2}})}
    assert r.effective_config(new, update, None, on_device) == {
        "settings": {"a": 1, "new": "n", "b": 2},
        "digest": "new",
    }
    # "" resets the whole configuration to the new version's defaults
    assert r.effective_config(new, {"reset": [""]}, None, on_device) == {
        "settings": {"a": 9, "new": "n"},
        "digest": "new",
    }
    # a reset pointer to a list element resets nothing (the nucleus resets whole lists only)
    assert r.effective_config(new, {"reset": ["/l/0"]}, None, {"l": [1, 2]})["l"] == [1, 2]
    with pytest.raises(r.RecipeError, match="JSON pointer"):
        r.effective_config(new, {"reset": ["digest"]}, None, on_device)
