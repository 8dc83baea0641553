"""CloudFormation custom resource: publish the training code where the pipeline's jobs read it.

Deployed as a Lambda function whose code is ``training/`` (``CodeUri: training/``, handler
``loupe_training.publish.lambda_handler``) with the common layer (``/opt/python/loupe``): it packs the files it was
deployed with, so the shims are read from their files, never held as copies. On Create/Update it writes
``s3://<Bucket>/<Key>`` (``sourcedir.tar.gz``) holding: ``train.py`` and ``job.py`` (the container entry shims),
``requirements.txt`` (the container's: this package's ``requirements.lock``, every requirement pinned with its
sha256, see ``make lock``), ``CODE_VERSION``, ``loupe_training/`` (this package) and ``loupe/`` (the domain package).
So ``sam deploy`` alone ships the code the pipeline definition points at. This module only uses the standard library
and boto3 (it runs in Lambda).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

# The SageMaker jobs' hashed lock (``make lock`` from training/requirements.in). It ships as the sourcedir's
# requirements.txt: the training toolkit pip-installs that name, and pip treats a file with hashes in hash-checking
# mode; the processing entry (training/pipeline.py) adds --require-hashes. It is never named requirements.txt here,
# or ``sam build`` would install the training stack into this function.
LOCK_NAME = "requirements.lock"

# The container entry shims that sit at the sourcedir's root: ``sagemaker_program`` and the processing entry. They
# are read from ``training/`` (this function's CodeUri), the same files the local pipeline runner starts.
SHIMS = ("train.py", "job.py")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # reproducible archive: same code, same bytes
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_tree(tar: tarfile.TarFile, root: Path, prefix: str) -> None:
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        _add_bytes(tar, f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())


def build_sourcedir(training_dir: Path, loupe_dir: Path, code_version: str) -> bytes:
    """sourcedir.tar.gz bytes of ``training_dir`` (the repository's ``training/``: the shims beside the
    ``loupe_training`` package) and the domain package (deterministic for the same inputs)."""
    package_dir = training_dir / "loupe_training"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for shim in SHIMS:
            _add_bytes(tar, shim, (training_dir / shim).read_bytes())
        _add_bytes(tar, "requirements.txt", (package_dir / LOCK_NAME).read_bytes())
        _add_bytes(tar, "CODE_VERSION", (code_version + "\n").encode())
        _add_tree(tar, package_dir, "loupe_training")
        _add_tree(tar, loupe_dir, "loupe")
    import gzip

    return gzip.compress(raw.getvalue(), mtime=0)


def _layer_package_dir() -> str:
    """The ``loupe`` package of the attached layer: where the function's import path finds it (``/opt/python``
    in Lambda); ``/opt/python/loupe`` when it is not importable (the caller then says the layer is missing)."""
    spec = importlib.util.find_spec("loupe")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return locations[0] if locations else "/opt/python/loupe"


def _respond(event: dict[str, Any], status: str, reason: str, data: dict[str, str], physical_id: str) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:3000],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    url = _response_url(event["ResponseURL"])
    req = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - checked by _response_url
        resp.read()


def _response_url(url: str) -> str:
    """CloudFormation's presigned ``ResponseURL``: https, or http to this host's own loopback interface (an
    endpoint on the machine running the function). Any other scheme (``file:``, ``ftp:``) or a plain-http remote
    host is refused: urllib would read local files or send the answer in clear."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return url
    raise ValueError("ResponseURL must be https (or http to the loopback interface)")


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def lambda_handler(event: dict[str, Any], context: Any, s3: Any = None) -> dict[str, str]:
    props = event.get("ResourceProperties", {})
    bucket, key = props.get("Bucket", ""), props.get("Key", "code/training/sourcedir.tar.gz")
    physical_id = event.get("PhysicalResourceId") or f"s3://{bucket}/{key}"
    data: dict[str, str] = {}
    try:
        if event["RequestType"] in ("Create", "Update"):
            training_dir = Path(__file__).resolve().parent.parent  # the function's code: training/
            loupe_dir = Path(os.environ.get("LOUPE_PACKAGE_DIR") or _layer_package_dir())
            if not (loupe_dir / "datasets.py").is_file():
                raise FileNotFoundError(f"{loupe_dir}: the common layer (loupe package) is not attached")
            blob = build_sourcedir(training_dir, loupe_dir, str(props.get("CodeVersion", "unknown")))
            if s3 is None:
                import boto3

                s3 = boto3.client("s3")
            s3.put_object(Bucket=bucket, Key=key, Body=blob)
            physical_id = f"s3://{bucket}/{key}"
            data = {"SourceDirUri": physical_id, "Sha256": hashlib.sha256(blob).hexdigest()}
        # Delete: the object stays (a running execution may still need it; the bucket's lifecycle owns cleanup)
        _respond(event, "SUCCESS", "ok", data, physical_id)
    except Exception as exc:  # CloudFormation must always get an answer, or the stack hangs for an hour
        _respond(event, "FAILED", f"{type(exc).__name__}: {exc}", data, physical_id)
    return data
