"""Recipe handling for local core devices: manifest selection, configuration, variable interpolation, artifacts.

Follows the Greengrass v2 recipe reference for what Loupe's components use: ``Manifests`` selected by platform
(``os: linux`` or ``all``/``*``), ``Lifecycle`` steps as a script or ``{Script, Timeout, Setenv, SkipIf}``,
``ComponentConfiguration.DefaultConfiguration`` merged with the deployment's ``configurationUpdate``, and the
recipe variables ``{artifacts:path}``, ``{artifacts:decompressedPath}``, ``{configuration:/json/pointer}``,
``{work:path}``, ``{iot:thingName}``, ``{kernel:rootPath}`` (also ``{<component>:artifacts:...}``,
``{<component>:configuration:...}``, ``{<component>:work:path}`` for dependencies).
"""

from __future__ import annotations

import copy
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from loupe.greengrass import artifact_uri_of, greengrass_digest_file
from loupe.safe_paths import UnsafeKeyError, confined, extract_zip

VARIABLE = re.compile(
    r"\{(?:(?P<comp>[A-Za-z0-9._-]+):)?(?P<ns>artifacts|work|configuration|iot|kernel):(?P<key>[^{}]*)\}"
)
DEFAULT_TIMEOUTS = {"install": 120, "startup": 120, "shutdown": 15, "recover": 60}


class RecipeError(RuntimeError):
    """A recipe the device cannot run, or an artifact it refuses (digest, archive)."""


class DeploymentFailed(RuntimeError):
    """A deployment a device could not apply: the reason, Greengrass' error stack and error types."""

    def __init__(self, reason: str, stack: list[str] | None = None, types: list[str] | None = None) -> None:
        super().__init__(reason)
        self.stack = stack or ["DEPLOYMENT_FAILURE"]
        self.types = types or []


@dataclass
class Layout:
    """Folders of one local core device, laid out like ``/greengrass/v2``."""

    root: Path

    def artifacts(self, name: str, version: str) -> Path:
        return _inside(self.root / "packages" / "artifacts", f"{name}/{version}")

    def unarchived(self, name: str, version: str) -> Path:
        return _inside(self.root / "packages" / "artifacts-unarchived", f"{name}/{version}")

    def work(self, name: str) -> Path:
        return _inside(self.root / "work", name)

    def log(self, name: str) -> Path:
        return _inside(self.root / "logs", f"{name}.log")


def _inside(base: Path, rel: str) -> Path:
    """``base / rel`` for names a recipe or an artifact URI gives; one that would leave ``base`` is a RecipeError."""
    try:
        return confined(base, rel)
    except UnsafeKeyError as exc:
        raise RecipeError(str(exc)) from exc


@dataclass
class Component:
    name: str
    version: str
    recipe: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest(self) -> dict[str, Any]:
        return select_manifest(self.recipe)

    @property
    def lifecycle(self) -> dict[str, Any]:
        return self.manifest.get("Lifecycle") or self.recipe.get("Lifecycle") or {}

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("Artifacts") or [])

    @property
    def dependencies(self) -> dict[str, dict[str, Any]]:
        return dict(self.recipe.get("ComponentDependencies") or {})

    def soft_dependencies(self) -> set[str]:
        return {n for n, d in self.dependencies.items() if str(d.get("DependencyType", "HARD")).upper() == "SOFT"}


def select_manifest(recipe: dict[str, Any]) -> dict[str, Any]:
    for manifest in recipe.get("Manifests") or []:
        os_name = str((manifest.get("Platform") or {}).get("os", "all")).lower()
        if os_name in ("linux", "all", "*", "/linux|darwin/"):
            return manifest
    if recipe.get("Manifests"):
        raise RecipeError(f"{recipe.get('ComponentName')}: no manifest for platform linux")
    return {}


def deep_merge(base: Any, update: Any) -> Any:
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for key, value in update.items():
            out[key] = deep_merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(update)


def effective_config(
    recipe: dict[str, Any],
    update: dict[str, Any] | None,
    overlay: dict[str, Any] | None,
    existing: dict[str, Any] | None = None,
) -> dict:
    """The configuration a deployment gives a component, as the nucleus resolves it (aws-greengrass-nucleus
    ``KernelConfigResolver.resolveConfigurationToApply``; developer guide, "Update component configurations"):

    1. the component's configuration on the device (``existing``; none when the component is new here),
    2. the ``reset`` pointers removed from it (``""`` = the whole configuration),
    3. the recipe's ``DefaultConfiguration`` filled in **only where a key is absent**: the nucleus merges the
       defaults with the oldest timestamp, so a value already on the device (from an earlier deployment or an
       earlier version's defaults) is kept when a new component version brings other defaults,
    4. the ``merge`` document deep-merged over it,
    5. the device's own overlay (what a nucleus' local configuration holds, e.g. this device's frame folder).
    """
    update = update or {}
    config: dict[str, Any] = copy.deepcopy(existing) if isinstance(existing, dict) else {}
    for pointer in update.get("reset") or []:
        if not isinstance(pointer, str):
            raise RecipeError(f"configurationUpdate.reset entries are JSON pointers, not {pointer!r}")
        if pointer == "":
            config = {}
            continue
        if not pointer.startswith("/"):
            raise RecipeError(f"configurationUpdate.reset entry {pointer!r} is not a JSON pointer (starts with /)")
        _remove(config, pointer)
    defaults = (recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}
    config = _fill_absent(config, defaults)
    if update.get("merge"):
        merge = update["merge"]
        try:
            merge = json.loads(merge) if isinstance(merge, str) else merge
        except ValueError as exc:
            raise RecipeError(f"configurationUpdate.merge is not JSON: {exc}") from exc
        config = deep_merge(config, merge)
    if overlay:
        config = deep_merge(config, overlay)
    return config


def _fill_absent(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` added where ``config`` lacks a key (nested objects key by key); present values win."""
    out = dict(config)
    for key, value in defaults.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _fill_absent(out[key], value)
    return out


def _remove(config: dict[str, Any], pointer: str) -> None:
    """Remove the node a reset pointer names (its default, if any, comes back with the defaults). A pointer to
    a list element is ignored, as the nucleus does (a whole list resets, never one element)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node: Any = config
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict) and parts:
        node.pop(parts[-1], None)


def json_pointer(doc: Any, pointer: str) -> Any:
    node = doc
    for raw in [p for p in pointer.split("/") if p]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def render_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def interpolate(text: str, me: Component, lookup: Callable[[str], Component | None], layout: Layout, thing: str) -> str:
    def one(match: re.Match[str]) -> str:
        comp_name = match.group("comp")
        comp = me if comp_name in (None, me.name) else lookup(comp_name)
        ns, key = match.group("ns"), match.group("key")
        if ns == "iot" and key == "thingName":
            return thing
        if ns == "kernel" and key == "rootPath":
            return str(layout.root)
        if comp is None:
            return match.group(0)  # Greengrass leaves variables of components that are not dependencies
        if ns == "artifacts" and key == "path":
            return str(layout.artifacts(comp.name, comp.version))
        if ns == "artifacts" and key == "decompressedPath":
            return str(layout.unarchived(comp.name, comp.version))
        if ns == "work" and key == "path":
            return str(layout.work(comp.name))
        if ns == "configuration":
            return render_value(json_pointer(comp.config, key))
        return match.group(0)

    return VARIABLE.sub(one, text)


def step_of(lifecycle: dict[str, Any], name: str) -> tuple[str, float | None, dict[str, str], str]:
    """(script, timeout seconds or None, Setenv, SkipIf) of a lifecycle step; empty script if absent."""
    for key, value in lifecycle.items():
        if key.lower() != name.lower():
            continue
        if isinstance(value, str):
            return value, DEFAULT_TIMEOUTS.get(name.lower()), {}, ""
        if isinstance(value, dict):
            timeout = value.get("Timeout", DEFAULT_TIMEOUTS.get(name.lower()))
            setenv = {str(k): str(v) for k, v in (value.get("Setenv") or {}).items()}
            return (
                str(value.get("Script") or ""),
                (float(timeout) if timeout else None),
                setenv,
                str(value.get("SkipIf") or ""),
            )
    return "", None, {}, ""


def locate_bucket(component: Component, s3: Any, bucket: str) -> None:
    """The nucleus asks for an artifact bucket's region before it downloads (GetBucketLocation): a token exchange
    role without s3:GetBucketLocation fails the deployment with S3_GET_BUCKET_LOCATION_ACCESS_DENIED before any
    GetObject (Greengrass developer guide, "Troubleshooting" > deployment error codes)."""
    try:
        s3.get_bucket_location(Bucket=bucket)
    except Exception as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        name = "S3_GET_BUCKET_LOCATION_ACCESS_DENIED" if code in ("AccessDenied", "403") else "S3_RESOURCE_NOT_FOUND"
        raise RecipeError(f"{component.name}: {name}: cannot get the location of bucket {bucket}: {exc}") from exc


def fetch_artifacts(component: Component, layout: Layout, s3: Any) -> list[str]:
    """Download (once), verify the recipe's SHA-256 digest, unarchive ZIPs. Returns what was done."""
    done = []
    for art in component.artifacts:
        uri = artifact_uri_of(art)
        if not uri.startswith("s3://"):
            raise RecipeError(f"{component.name}: only s3:// artifacts are supported locally ({uri})")
        bucket, _, key = uri[5:].partition("/")
        fname = PurePosixPath(key).name
        dest = _inside(layout.artifacts(component.name, component.version), fname)
        dest.parent.mkdir(parents=True, exist_ok=True)
        want = art.get("Digest")
        if not dest.is_file() or (want and greengrass_digest_file(dest) != want):
            tmp = dest.with_name(f".{fname}.part")
            locate_bucket(component, s3, bucket)
            try:
                s3.download_file(bucket, key, str(tmp))
            except Exception as exc:
                raise RecipeError(f"{component.name}: cannot download {uri}: {exc}") from exc
            if want:
                got = greengrass_digest_file(tmp)
                if got != want:
                    tmp.unlink(missing_ok=True)
                    raise RecipeError(
                        f"{component.name} {component.version}: artifact {fname} digest {got} does not match the "
                        f"recipe's {want} (changed after publishing)"
                    )
            tmp.replace(dest)
            done.append(f"downloaded {fname}")
        if str(art.get("Unarchive", "NONE")).upper() == "ZIP":
            target = layout.unarchived(component.name, component.version) / PurePosixPath(fname).stem
            marker = target / ".loupe-unarchived"
            if not marker.is_file() or marker.read_text() != (want or ""):
                safe_unzip(dest, target)
                marker.write_text(want or "")
                done.append(f"unarchived {fname}")
    return done


def safe_unzip(archive: Path, target: Path) -> None:
    import shutil

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    try:
        extract_zip(archive, target)
    except UnsafeKeyError as exc:
        shutil.rmtree(target)
        raise RecipeError(f"{archive.name}: unsafe entry: {exc}") from exc
    except zipfile.BadZipFile as exc:
        raise RecipeError(f"{archive.name} is not a ZIP archive: {exc}") from exc
