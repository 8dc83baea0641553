"""The package bytes against their registered digests: the ``model.tar.gz`` itself, then the files inside it."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

from loupe import recipe_values
from loupe.aws_clients import S3
from loupe.deployment.errors import ArtifactDigestMismatch, PackageInvalid
from loupe.deployment.packages import Package, split_s3_url

MAX_PACKAGE_BYTES = 512 * 1024 * 1024
FILE_DIGEST_KEYS = {
    "model.onnx": "model_sha256",
    "model_int8.onnx": "model_int8_sha256",
    "model_card.json": "model_card_sha256",
}


def fetch(s3: S3, url: str) -> bytes:
    bucket, key = split_s3_url(url)
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise PackageInvalid(f"cannot read {url}: {exc}") from exc
    if int(obj.get("ContentLength") or 0) > MAX_PACKAGE_BYTES:
        raise PackageInvalid(f"{url} is larger than {MAX_PACKAGE_BYTES} bytes")
    body: bytes = obj["Body"].read()
    return body


def unpack_package(data: bytes) -> dict[str, bytes]:
    """Files of a model.tar.gz (flat, regular files only), refusing anything else."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                if member.isdir() and name in ("", "."):
                    continue
                if not member.isfile() or "/" in name or name in ("", "..") or name.startswith("."):
                    raise PackageInvalid(f"model package entry {member.name!r} is not a plain top-level file")
                fh = tar.extractfile(member)
                assert fh is not None
                files[name] = fh.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise PackageInvalid(f"model package is not a readable tar.gz: {exc}") from exc
    if "model.onnx" not in files:
        raise PackageInvalid(f"model package holds no model.onnx (found {sorted(files)})")
    return files


def check_digests(package: Package, data: bytes) -> dict[str, bytes]:
    """Compare the package bytes (and the files inside) with the registered digests; returns the files."""
    want = package.digests.get("package_sha256")
    if not want:
        raise ArtifactDigestMismatch(
            f"package {package.version} has no registered package_sha256: refusing an unverifiable artifact"
        )
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ArtifactDigestMismatch(
            f"{package.model_data_url}: SHA-256 {got} does not match the registered {want} (changed after registration)"
        )
    files = unpack_package(data)
    for name, key in FILE_DIGEST_KEYS.items():
        expected = package.digests.get(key)
        if not expected or expected == "none":  # "none": the artifact was not kept (e.g. INT8 outside tolerance)
            continue
        if name not in files:
            raise ArtifactDigestMismatch(f"registered {key} but the package holds no {name}")
        actual = hashlib.sha256(files[name]).hexdigest()
        if actual != expected:
            raise ArtifactDigestMismatch(f"{name}: SHA-256 {actual} does not match the registered {expected}")
    return files


def verified_files(s3: S3, package: Package) -> tuple[bytes, dict[str, bytes]]:
    """The package bytes and the files inside them, once they match the registered digests."""
    data = fetch(s3, package.model_data_url)
    return data, check_digests(package, data)


def verify(s3: S3, package_json: dict[str, Any]) -> dict[str, Any]:
    package = Package(**package_json)
    data, files = verified_files(s3, package)
    model_version_of(files, package)  # a card whose values may not reach a recipe is refused before anything is built
    return {
        "package_sha256": hashlib.sha256(data).hexdigest(),
        "files": {name: hashlib.sha256(body).hexdigest() for name, body in sorted(files.items())},
        "bytes": len(data),
    }


def model_version_of(files: dict[str, bytes], package: Package) -> str:
    """The model version results will report: the model card's ``version``, else the package version.

    The registered digests prove the card is the one registered, not that what it says is safe: its ``version`` and
    artifact digests are checked against their whitelists (:mod:`loupe.recipe_values`) before they go anywhere."""
    try:
        card = json.loads(files.get("model_card.json") or b"{}")
    except ValueError as exc:
        raise PackageInvalid(f"model_card.json is not valid JSON: {exc}") from exc
    try:
        recipe_values.check_card(card)
        version = recipe_values.card_version(card) or package.model_version
        return recipe_values.check("model version", version, "model version")
    except recipe_values.RecipeValueError as exc:
        raise PackageInvalid(f"package {package.version}: model_card.json refused: {exc}") from exc
