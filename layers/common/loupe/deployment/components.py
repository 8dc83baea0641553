"""The Greengrass components a deployment carries: ``com.loupe.model`` built from the verified package bytes (or, for
a candidate run beside production, ``com.loupe.shadow`` built the same way), and the published
``com.loupe.inference`` version to deploy."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from loupe import greengrass as gg_mod
from loupe import uncertainty
from loupe.aws_clients import S3, GreengrassV2
from loupe.deployment.errors import ComponentMissing, DeploymentError
from loupe.deployment.packages import Package
from loupe.deployment.verification import model_version_of, verified_files
from loupe.settings import Settings

MAX_PATCHES = 100


def publish_model_component(
    gg: GreengrassV2,
    s3: S3,
    package_json: dict[str, Any],
    inference: dict[str, Any],
    settings: Settings,
    component: str = gg_mod.MODEL_COMPONENT,
) -> dict[str, Any]:
    """Re-verify the package bytes, repack them as the component's ZIP and create ``com.loupe.model``.

    The recipe comes from the template shipped with the deployed ``com.loupe.inference`` version. The version
    is ``1.<package version>.<patch>``; an existing version holding the same bytes is reused, one holding other
    bytes is never overwritten (the patch moves on).

    ``component=com.loupe.shadow``: the same recipe under the shadow component's name, for a candidate run beside
    production. Its Install runs the same check (registered digests, one smoke inference) and writes the pointer in
    its own work folder, which the inference component follows for the candidate (``loupe_edge.shadow``)."""
    if component not in (gg_mod.MODEL_COMPONENT, gg_mod.SHADOW_COMPONENT):
        raise DeploymentError(f"{component} is not a model component")
    bucket = settings.artifact_bucket
    if not bucket:
        raise DeploymentError("missing configuration: ARTIFACT_BUCKET")
    package = Package(**package_json)
    _, files = verified_files(s3, package)  # the bytes we publish are the bytes we verified
    shipped = gg_mod.model_component_files(gg, s3, inference["arn"])
    zipped = dict(files)
    if gg_mod.MODEL_CHECK_MEMBER in shipped:  # the device-side install check travels with the model
        zipped[gg_mod.MODEL_CHECK_FILE] = shipped[gg_mod.MODEL_CHECK_MEMBER]
    archive = gg_mod.deterministic_zip(zipped)
    digest = gg_mod.greengrass_digest(archive)
    served = model_version_of(files, package)
    band = feedback_band(files)
    for patch in range(0, MAX_PATCHES):
        version = gg_mod.model_component_version(package.version, patch)
        existing = gg_mod.component_arn(gg, component, version)
        if existing is None:
            break
        recipe = gg_mod.get_recipe(gg, existing)
        if [a.get("Digest") for a in gg_mod.recipe_artifacts(recipe)] == [digest]:
            return {
                "name": component,
                "version": version,
                "arn": existing,
                "reused": True,
                "model_version": served,
                "feedback_band": band,
            }
    else:
        raise DeploymentError(f"no free {component} version for package {package.version}")
    key = gg_mod.artifact_key(component, version, "model.zip")
    template = shipped[gg_mod.MODEL_TEMPLATE_MEMBER].decode()
    recipe = gg_mod.render_model_recipe(
        template,
        {
            "ComponentVersion": version,
            "ModelVersion": served,
            "ModelPackageArn": package.arn,
            "ArtifactUri": f"s3://{bucket}/{key}",
            "ModelSha256": hashlib.sha256(files["model.onnx"]).hexdigest(),
            "ModelInt8Sha256": hashlib.sha256(files["model_int8.onnx"]).hexdigest()
            if "model_int8.onnx" in files
            else "",
        },
    )
    if component != gg_mod.MODEL_COMPONENT:
        recipe["ComponentName"] = component
        recipe["ComponentDescription"] = f"Loupe candidate model {served} (shadow mode, beside production)."
    for art in gg_mod.recipe_artifacts(recipe):
        art["Algorithm"], art["Digest"] = "SHA-256", digest  # the service refuses other bytes at that key
    s3.put_object(Bucket=bucket, Key=key, Body=archive, ContentType="application/zip")
    created = gg_mod.create_component(gg, recipe)
    return {**created, "reused": False, "model_version": served, "feedback_band": band}


def feedback_band(files: dict[str, bytes]) -> dict[str, Any] | None:
    """The uncertainty band the model card (verified with the package) carries for this model, as the inference
    component's ``feedback`` settings; None when it carries none (loupe.uncertainty)."""
    try:
        card = json.loads(files.get("model_card.json") or b"{}")
    except ValueError:
        return None  # model_version_of has refused an unreadable card already
    return uncertainty.settings_from_card(card) if isinstance(card, dict) else None


def inference_component(gg: GreengrassV2, settings: Settings) -> dict[str, Any]:
    """The published ``com.loupe.inference`` version to deploy (pinned, or the newest deployable)."""
    name = gg_mod.INFERENCE_COMPONENT
    pinned = settings.inference_component_version
    if pinned:
        arn = gg_mod.component_arn(gg, name, pinned)
        if arn is None:
            raise ComponentMissing(f"{name} {pinned} (pinned) is not published")
        return {"name": name, "version": pinned, "arn": arn}
    found = gg_mod.latest_deployable(gg, name)
    if found is None:
        raise ComponentMissing(f"{name} is not published: publish edge_component/ first (loupe edge publish)")
    return {"name": name, "version": found[0], "arn": found[1]}
