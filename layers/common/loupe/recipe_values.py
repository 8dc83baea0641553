"""Whitelists for every value that reaches a Greengrass recipe: model and component versions, ARNs, S3 URIs, digests.

A model package travels from training to the devices' ``com.loupe.model`` recipe. The registered digests protect its
*bytes*, not what it *says*: a model card whose ``version`` is ``1'; touch /tmp/pwned; echo '`` is a perfectly
well-digested file. On a core device the nucleus substitutes ``{configuration:/...}`` recipe variables into lifecycle
text before anything runs, so a value spliced into a script is code. The recipes no longer splice configuration into
scripts (values reach them as environment variables: ``Setenv``), and, as a second wall, every value is checked
here against a strict pattern where it enters the system (training writes the card and the registration metadata)
and again where it leaves (the edge deployment, before anything is published or deployed).

Each pattern is a whitelist of ASCII characters: no quotes, spaces, ``$``, backticks, ``;``, ``&``, ``|``, braces or
newlines, so no value can change the shape of a YAML document or of a shell command line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# name -> (pattern, what it allows, in words)
_RULES: dict[str, tuple[str, str]] = {
    # the version results report (the model card's ``version``, else the package version)
    "model version": (
        r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}",
        "1 to 64 characters: letters, digits and . _ + -, starting with a letter or digit",
    ),
    # a Greengrass component version as Loupe writes it: MAJOR.MINOR.PATCH
    "component version": (r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})", "MAJOR.MINOR.PATCH"),
    # a versioned model package (ModelPackageArn in the SageMaker API reference; the group name's own pattern)
    "model package ARN": (
        r"arn:aws[a-z-]{0,16}:sagemaker:[a-z0-9-]{1,32}:[0-9]{12}:model-package/"
        r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}/[0-9]{1,9}",
        "arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>",
    ),
    # a bucket (S3 bucket naming rules) and a key of S3's safe characters without the ones a shell or YAML reads
    "S3 URI": (
        r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*()/=+-]{1,1024}",
        "s3://<bucket>/<key> with a key of letters, digits and ! _ . * ( ) / = + -",
    ),
    "SHA-256": (r"[0-9a-f]{64}", "64 lowercase hex digits"),
    # a recipe artifact's Digest: base64 of the raw SHA-256
    "Greengrass digest": (r"[A-Za-z0-9+/]{43}=", "base64 of a SHA-256 (44 characters)"),
}
_COMPILED = {name: re.compile(pattern, re.ASCII) for name, (pattern, _) in _RULES.items()}

# SageMaker refuses empty metadata values: "none" says an optional artifact (the INT8 model) was not kept
NO_DIGEST = "none"


class RecipeValueError(ValueError):
    """A value that must never reach a recipe, with what it should have looked like."""


def check(kind: str, value: Any, what: str) -> str:
    """``value`` when it is a string matching the ``kind`` whitelist; else :class:`RecipeValueError` naming ``what``."""
    pattern = _COMPILED[kind]
    if not isinstance(value, str) or pattern.fullmatch(value) is None or ".." in value:
        shown = repr(value) if len(repr(value)) <= 120 else repr(value)[:117] + "..."
        raise RecipeValueError(f"{what} {shown} is not a valid {kind} ({_RULES[kind][1]})")
    return value


def check_digest(value: Any, what: str, *, optional: bool = False) -> str:
    """A hex SHA-256; with ``optional``, also empty or ``none`` (an artifact that is not part of the package)."""
    if optional and value in ("", NO_DIGEST):
        return str(value)
    return check("SHA-256", value, what)


def card_version(card: Any) -> str | None:
    """The model card's top-level ``version``, checked; None when the card carries none (the registry's version is
    used). A card that is not a JSON object is refused."""
    if not isinstance(card, Mapping):
        raise RecipeValueError("model_card.json must hold a JSON object")
    version = card.get("version")
    if version is None or version == "":
        return None
    if isinstance(version, bool) or not isinstance(version, str | int):
        raise RecipeValueError(f"model card version {version!r} is not a valid model version (a string)")
    return check("model version", str(version), "model card version")


def check_card(card: Any) -> None:
    """What a model card contributes to a recipe: its ``version`` and the digests of its artifacts."""
    card_version(card)
    artifacts = card.get("artifacts") or {}
    if not isinstance(artifacts, Mapping):
        raise RecipeValueError("model card artifacts must be a JSON object")
    for name, entry in artifacts.items():
        if isinstance(entry, Mapping) and "sha256" in entry:
            check_digest(entry["sha256"], f"model card artifacts.{name}.sha256")
    flat = card.get("sha256") or {}
    if isinstance(flat, Mapping):
        for name, digest in flat.items():
            check_digest(digest, f"model card sha256.{name}")


# the registration metadata whose values are digests (CustomerMetadataProperties of a model package)
DIGEST_KEYS = ("package_sha256", "model_sha256", "model_int8_sha256", "model_card_sha256")


def check_package_metadata(metadata: Mapping[str, Any]) -> None:
    """Registration metadata: every ``*_sha256`` a hex SHA-256 (``model_int8_sha256`` may be ``none``), every
    ``*_uri`` an S3 URI."""
    for key, value in metadata.items():
        if key.endswith("_sha256"):
            check_digest(value, f"metadata {key}", optional=key == "model_int8_sha256")
        elif key.endswith("_uri") and value:
            check("S3 URI", value, f"metadata {key}")


# the com.loupe.model recipe template's placeholders (edge_component/model/recipe.yaml) and their whitelists
MODEL_RECIPE_VALUES: dict[str, tuple[str, bool]] = {
    "ComponentVersion": ("component version", False),
    "ModelVersion": ("model version", False),
    "ModelPackageArn": ("model package ARN", False),
    "ArtifactUri": ("S3 URI", False),
    "ModelSha256": ("SHA-256", False),
    "ModelInt8Sha256": ("SHA-256", True),  # empty: no INT8 model in the package
}


def check_model_recipe_values(values: Mapping[str, Any]) -> None:
    """Every value the ``com.loupe.model`` template is filled with, against its whitelist; unknown names refused."""
    unknown = sorted(set(values) - set(MODEL_RECIPE_VALUES))
    if unknown:
        raise RecipeValueError(f"no whitelist for model recipe values {', '.join(unknown)}")
    for name, (kind, optional) in MODEL_RECIPE_VALUES.items():
        value = values.get(name)
        if optional and value == "":
            continue
        check(kind, value, name)
