"""Greengrass v2 building blocks: component versions, recipes, artifact digests, publishing.

Pure functions plus a few calls that take their ``greengrassv2`` / ``s3`` clients as arguments. Used by the edge
deployment workflow (Lambda), by ``loupe edge publish`` and by the local Greengrass stand-in and devices, so the
cloud and the local loop agree on versions, digests and recipe shape.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import string
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from loupe import recipe_values
from loupe.aws_clients import S3, GreengrassV2

MODEL_COMPONENT = "com.loupe.model"
SHADOW_COMPONENT = "com.loupe.shadow"  # a candidate model beside production (shadow mode): same recipe template
INFERENCE_COMPONENT = "com.loupe.inference"
COMPONENT_PREFIX = "com.loupe."
RECIPE_FORMAT = "2020-01-25"
ARTIFACT_PREFIX = "edge/artifacts"
MODEL_MAJOR = 1

SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_ZIP_EPOCH = (2020, 1, 1, 0, 0, 0)


class GreengrassError(RuntimeError):
    """A Greengrass component or deployment step that cannot go on, with the reason."""


# ------------------------------------------------------------------ versions
def parse_version(version: str) -> tuple[int, int, int]:
    match = SEMVER.match(str(version).strip())
    if not match:
        raise GreengrassError(f"{version!r} is not a MAJOR.MINOR.PATCH component version")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Newest first; versions that are not plain semver are left out."""
    good = []
    for v in versions:
        try:
            good.append((parse_version(v), v))
        except GreengrassError:
            continue
    return [v for _, v in sorted(good, reverse=True)]


def model_component_version(package_version: int | str, patch: int = 0) -> str:
    """The model component version of a package version: ``1.<package version>.<patch>``.

    The patch number only moves when ``1.<N>.0`` already exists with different bytes (never overwrite)."""
    try:
        n = int(package_version)
    except (TypeError, ValueError):
        raise GreengrassError(f"model package version {package_version!r} is not a whole number") from None
    if n < 1:
        raise GreengrassError(f"model package version {n} must be 1 or more")
    return f"{MODEL_MAJOR}.{n}.{int(patch)}"


# ------------------------------------------------------------------ digests
def greengrass_digest(data: bytes) -> str:
    """The digest Greengrass stores in a recipe artifact: base64 of the raw SHA-256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def greengrass_digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


def deterministic_zip(files: dict[str, bytes]) -> bytes:
    """A ZIP whose bytes depend only on the names and contents (fixed timestamps, sorted entries)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return buf.getvalue()


# ------------------------------------------------------------------ recipes
def load_recipe(text: str | bytes) -> dict[str, Any]:
    """A recipe from YAML or JSON text, checked for the fields every recipe needs."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GreengrassError(f"recipe is not valid YAML/JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise GreengrassError("recipe must be a mapping")
    for key in ("RecipeFormatVersion", "ComponentName", "ComponentVersion"):
        if not doc.get(key):
            raise GreengrassError(f"recipe has no {key}")
    parse_version(doc["ComponentVersion"])
    return doc


def recipe_artifacts(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for manifest in recipe.get("Manifests") or []:
        out.extend(manifest.get("Artifacts") or [])
    return out


def artifact_key(component: str, version: str, filename: str) -> str:
    return f"{ARTIFACT_PREFIX}/{component}/{version}/{filename}"


def render_model_recipe(template_text: str, values: dict[str, str]) -> dict[str, Any]:
    """The ``com.loupe.model`` recipe from ``edge_component/model/recipe.yaml``.

    Every value is checked against its whitelist first (:mod:`loupe.recipe_values`). The template is parsed as YAML
    *before* it is filled: ``${Name}`` placeholders (Python ``string.Template`` syntax) are replaced inside string
    scalars, so a value can never change the document's shape, and never inside a lifecycle ``Script`` (values reach
    scripts as environment variables, ``Setenv``). ``{...}`` recipe variables stay for the device to resolve."""
    try:
        recipe_values.check_model_recipe_values(values)
    except recipe_values.RecipeValueError as exc:
        raise GreengrassError(f"{MODEL_COMPONENT} recipe refused: {exc}") from exc
    try:
        doc = yaml.safe_load(template_text)
    except yaml.YAMLError as exc:
        raise GreengrassError(f"model recipe template is not valid YAML: {exc}") from exc
    missing: set[str] = set()

    def fill(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: fill(v, str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v, key) for v in node]
        if isinstance(node, str) and key != "Script":
            missing.update(n for n in _PLACEHOLDER.findall(node) if n not in values)
            return string.Template(node).safe_substitute(values)
        return node

    filled = fill(doc)
    if missing:
        raise GreengrassError(f"model recipe template needs values for {', '.join(sorted(missing))}")
    if not isinstance(filled, dict):
        raise GreengrassError("model recipe template must be a mapping")
    check_scripts(filled)
    return load_recipe(json.dumps(filled))


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def lifecycle_scripts(recipe: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(where, script text) of every lifecycle step of a recipe: manifests' and the global ``Lifecycle``."""
    lifecycles = [("Lifecycle", recipe.get("Lifecycle") or {})]
    manifests = recipe.get("Manifests") or []
    lifecycles += [(f"Manifests[{i}].Lifecycle", m.get("Lifecycle") or {}) for i, m in enumerate(manifests)]
    for where, lifecycle in lifecycles:
        if not isinstance(lifecycle, dict):
            continue
        for step, body in lifecycle.items():
            script = body.get("Script") if isinstance(body, dict) else body
            if isinstance(script, str):
                yield f"{where}.{step}", script


def check_scripts(recipe: dict[str, Any]) -> None:
    """Refuse a recipe whose lifecycle scripts splice component configuration into shell text.

    The nucleus replaces ``{configuration:/path}`` (and ``{<component>:configuration:/path}``) with the value's text
    before the shell reads the script, so whoever sets the value writes code (Greengrass developer guide, component
    recipe reference, "Recipe variables"). Configuration reaches a script through ``Setenv`` instead: an environment
    variable is data to the shell when quoted ("$NAME"). Nucleus-controlled variables (``{artifacts:...}``,
    ``{work:path}``, ``{kernel:rootPath}``, ``{iot:thingName}``) stay allowed."""
    for where, script in lifecycle_scripts(recipe):
        if _CONFIG_VARIABLE.search(script):
            raise GreengrassError(
                f"{recipe.get('ComponentName')} recipe refused: {where} splices component configuration into its "
                "script (pass it through Setenv instead)"
            )


_CONFIG_VARIABLE = re.compile(r"\{(?:[A-Za-z0-9._-]+:)?configuration:")


def render_inference_recipe(recipe_text: str, version: str, artifact_uri: str, author: str = "Loupe") -> dict[str, Any]:
    """``edge_component/inference/recipe.yaml`` (GDK placeholders) with its version and artifact location."""
    text = recipe_text.replace("{COMPONENT_VERSION}", version).replace("{COMPONENT_AUTHOR}", author)
    recipe = load_recipe(text)
    check_scripts(recipe)
    arts = recipe_artifacts(recipe)
    if len(arts) != 1:
        raise GreengrassError(f"{INFERENCE_COMPONENT} recipe must have exactly one artifact, found {len(arts)}")
    arts[0].pop("URI", None)
    arts[0]["Uri"] = artifact_uri
    return recipe


def artifact_uri_of(artifact: dict[str, Any]) -> str:
    """Recipes may spell the key ``Uri`` or ``URI``."""
    return artifact.get("Uri") or artifact.get("URI") or ""


# ------------------------------------------------------------------ service calls
def component_arn(gg: GreengrassV2, name: str, version: str | None = None) -> str | None:
    """ARN of a private component (version) if it exists, else None."""
    for comp in paged(gg, "list_components", "components", scope="PRIVATE"):
        if comp["componentName"] == name:
            arn = comp["arn"]
            if version is None:
                return arn
            for v in paged(gg, "list_component_versions", "componentVersions", arn=arn):
                if v["componentVersion"] == version:
                    return v["arn"]
            return None
    return None


def component_versions(gg: GreengrassV2, name: str) -> list[str]:
    arn = component_arn(gg, name)
    if arn is None:
        return []
    return sort_versions(
        v["componentVersion"] for v in paged(gg, "list_component_versions", "componentVersions", arn=arn)
    )


def get_recipe(gg: GreengrassV2, version_arn: str) -> dict[str, Any]:
    out = gg.get_component(arn=version_arn, recipeOutputFormat="JSON")
    return json.loads(out["recipe"])


def latest_deployable(gg: GreengrassV2, name: str) -> tuple[str, str] | None:
    """(version, arn) of the newest version of ``name`` that Greengrass can deploy."""
    for version in component_versions(gg, name):
        arn = component_arn(gg, name, version)
        if arn and gg.describe_component(arn=arn)["status"]["componentState"] == "DEPLOYABLE":
            return version, arn
    return None


def create_component(gg: GreengrassV2, recipe: dict[str, Any], wait_seconds: float = 60.0) -> dict[str, Any]:
    """CreateComponentVersion and wait until the service has checked the artifacts (DEPLOYABLE or FAILED)."""
    out = gg.create_component_version(inlineRecipe=json.dumps(recipe).encode())
    arn = out["arn"]
    deadline = time.monotonic() + wait_seconds
    status = out["status"]
    while status["componentState"] in ("REQUESTED", "INITIATED") and time.monotonic() < deadline:
        time.sleep(1.0)
        status = gg.describe_component(arn=arn)["status"]
    if status["componentState"] != "DEPLOYABLE":
        raise GreengrassError(
            f"{recipe['ComponentName']} {recipe['ComponentVersion']} is {status['componentState']}: "
            f"{status.get('message') or status.get('errors')}"
        )
    return {"name": recipe["ComponentName"], "version": recipe["ComponentVersion"], "arn": arn}


def publish_component(
    gg: GreengrassV2, s3: S3, bucket: str, recipe: dict[str, Any], artifacts: dict[str, bytes]
) -> dict[str, Any]:
    """Upload artifacts under ``edge/artifacts/<name>/<version>/`` and create the version (idempotent).

    An existing version with the same artifact digests is reused; one with different bytes is a conflict
    (versions are never overwritten)."""
    name, version = recipe["ComponentName"], recipe["ComponentVersion"]
    digests = {fname: greengrass_digest(data) for fname, data in artifacts.items()}
    existing = component_arn(gg, name, version)
    if existing is not None:
        have = {Path(artifact_uri_of(a)).name: a.get("Digest") for a in recipe_artifacts(get_recipe(gg, existing))}
        if have == digests:
            return {"name": name, "version": version, "arn": existing, "reused": True}
        raise GreengrassError(f"{name} {version} already exists with other artifacts; bump the version")
    for fname, data in artifacts.items():
        s3.put_object(Bucket=bucket, Key=artifact_key(name, version, fname), Body=data)
    for art in recipe_artifacts(recipe):
        fname = Path(artifact_uri_of(art)).name
        if fname in digests:
            art.setdefault("Algorithm", "SHA-256")
            art.setdefault("Digest", digests[fname])
    return {**create_component(gg, recipe), "reused": False}


# ------------------------------------------------------------------ the nucleus and AWS-provided components
NUCLEUS = "aws.greengrass.Nucleus"


def public_component_arn(region: str, name: str, version: str | None = None) -> str:
    """ARN of an AWS-provided component: the account field is ``aws``."""
    base = f"arn:aws:greengrass:{region}:aws:components:{name}"
    return f"{base}:versions:{version}" if version else base


def version_satisfies(version: str, requirement: str) -> bool:
    """``version`` against a recipe ``VersionRequirement`` (space-separated ``>=``, ``>``, ``<=``, ``<``, ``=``
    comparators, all of which must hold; a bare version means ``=``)."""
    have = parse_version(version)
    for term in str(requirement or "").replace(",", " ").split():
        op = next((o for o in (">=", "<=", ">", "<", "=") if term.startswith(o)), "=")
        want = parse_version(term[len(op) :] if term.startswith(op) else term)
        ok = {
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
            "=": have == want,
        }[op]
        if not ok:
            return False
    return True


def nucleus_requirement(recipe: dict[str, Any]) -> str:
    deps = recipe.get("ComponentDependencies") or {}
    return str((deps.get(NUCLEUS) or {}).get("VersionRequirement") or "")


def model_configuration(gg: GreengrassV2, version_arn: str) -> dict[str, Any]:
    """The per-model values of a ``com.loupe.model`` version (its recipe's DefaultConfiguration: model version,
    package ARN, digests), each checked against ``loupe.recipe_values`` again before it is deployed."""
    recipe = get_recipe(gg, version_arn)
    config = dict((recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {})
    values = {MODEL_CONFIGURATION_KEYS[k]: str(v) for k, v in config.items() if k in MODEL_CONFIGURATION_KEYS}
    unknown = sorted(set(config) - set(MODEL_CONFIGURATION_KEYS))
    if unknown or len(values) != len(MODEL_CONFIGURATION_KEYS):
        raise GreengrassError(f"{version_arn}: unexpected configuration keys {unknown or sorted(config)}")
    try:
        for name, value in values.items():
            kind, optional = recipe_values.MODEL_RECIPE_VALUES[name]
            if not (optional and value == ""):
                recipe_values.check(kind, value, name)
    except recipe_values.RecipeValueError as exc:
        raise GreengrassError(f"{version_arn}: {exc}") from exc
    return {k: str(v) for k, v in config.items()}


# com.loupe.model's configuration keys and the template placeholders (loupe.recipe_values names) they carry
MODEL_CONFIGURATION_KEYS = {
    "modelVersion": "ModelVersion",
    "modelPackageArn": "ModelPackageArn",
    "modelSha256": "ModelSha256",
    "modelInt8Sha256": "ModelInt8Sha256",
}


def component_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """What a deployment keeps of a component: its version, ``configurationUpdate`` and ``runWith``."""
    return {k: v for k, v in (spec or {}).items() if k in ("componentVersion", "configurationUpdate", "runWith")}


def paged(client: Any, op: str, key: str, **kwargs: Any) -> Iterable[dict[str, Any]]:
    """Every item under ``key`` of a Greengrass list operation, following ``nextToken``."""
    token = None
    while True:
        out = getattr(client, op)(**kwargs, **({"nextToken": token} if token else {}))
        yield from out.get(key, [])
        token = out.get("nextToken")
        if not token:
            return


# ------------------------------------------------------------------ the edge components built from edge_component/
MODEL_TEMPLATE_MEMBER = "com.loupe.model.recipe.yaml"
MODEL_CHECK_MEMBER = "com.loupe.model.check_model.py"
MODEL_CHECK_FILE = "check_model.py"  # its name inside the com.loupe.model ZIP
_EDGE_EXCLUDE = {"__pycache__", ".pytest_cache", "gdk-config.json", "recipe.yaml", "greengrass-build", "zip-build"}


def inference_archive(edge_dir: Path) -> bytes:
    """``com.loupe.inference.zip``: the component folder (like ``gdk component build`` with the zip build
    system) plus the matching ``com.loupe.model`` recipe template, so both are versioned together."""
    root = Path(edge_dir) / "inference"
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or path.suffix == ".pyc" or any(p in _EDGE_EXCLUDE for p in rel.parts):
            continue
        files[rel.as_posix()] = path.read_bytes()
    template = Path(edge_dir) / "model" / "recipe.yaml"
    if not files or not template.is_file():
        raise GreengrassError(f"{edge_dir} has no inference/ component or no model/recipe.yaml")
    files[MODEL_TEMPLATE_MEMBER] = template.read_bytes()
    check = Path(edge_dir) / "model" / MODEL_CHECK_FILE
    if check.is_file():
        files[MODEL_CHECK_MEMBER] = check.read_bytes()
    return deterministic_zip(files)


def publish_inference(gg: GreengrassV2, s3: S3, bucket: str, edge_dir: Path, author: str = "Loupe") -> dict[str, Any]:
    """Publish ``com.loupe.inference`` from ``edge_component/`` once per content: an existing version with the
    same archive is reused, else the next patch version is created."""
    archive = inference_archive(edge_dir)
    digest = greengrass_digest(archive)
    versions = component_versions(gg, INFERENCE_COMPONENT)
    for version in versions:
        arn = component_arn(gg, INFERENCE_COMPONENT, version)
        if arn and [a.get("Digest") for a in recipe_artifacts(get_recipe(gg, arn))] == [digest]:
            return {"name": INFERENCE_COMPONENT, "version": version, "arn": arn, "reused": True}
    if versions:
        major, minor, patch = parse_version(versions[0])
        version = f"{major}.{minor}.{patch + 1}"
    else:
        version = "1.0.0"
    fname = f"{INFERENCE_COMPONENT}.zip"
    uri = f"s3://{bucket}/{artifact_key(INFERENCE_COMPONENT, version, fname)}"
    recipe_text = (Path(edge_dir) / "inference" / "recipe.yaml").read_text()
    recipe = render_inference_recipe(recipe_text, version, uri, author)
    return publish_component(gg, s3, bucket, recipe, {fname: archive})


def model_component_files(gg: GreengrassV2, s3: S3, inference_arn: str) -> dict[str, bytes]:
    """What a published ``com.loupe.inference`` version carries for ``com.loupe.model``: the recipe template and,
    when present, the install-time model check (digests + one smoke inference on the device)."""
    arts = recipe_artifacts(get_recipe(gg, inference_arn))
    if not arts:
        raise GreengrassError(f"{inference_arn} has no artifact")
    uri = artifact_uri_of(arts[0])
    bucket, _, key = uri[5:].partition("/")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if arts[0].get("Digest") and greengrass_digest(data) != arts[0]["Digest"]:
        raise GreengrassError(f"{uri} does not match the digest of {inference_arn}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            out = {MODEL_TEMPLATE_MEMBER: zf.read(MODEL_TEMPLATE_MEMBER)}
            if MODEL_CHECK_MEMBER in zf.namelist():
                out[MODEL_CHECK_MEMBER] = zf.read(MODEL_CHECK_MEMBER)
            return out
    except (KeyError, zipfile.BadZipFile) as exc:
        raise GreengrassError(f"{uri} carries no {MODEL_TEMPLATE_MEMBER}: {exc}") from exc
