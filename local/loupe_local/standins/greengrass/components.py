"""Greengrass v2 components: the account's component versions (recipes, artifact digests) and AWS's public ones.

CreateComponentVersion stores the recipe, fetches every S3 artifact and writes its SHA-256 digest into the recipe
like the service (a recipe digest that does not match the bytes makes the version FAILED); DescribeComponent,
GetComponent, ListComponents (PRIVATE / PUBLIC scope), ListComponentVersions. The public catalogue holds the
AWS-provided components a local core device provides itself (nucleus, disk spooler).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from typing import Any

import yaml

from loupe_local.standins.base import AwsRequest, Response, StandInHost, error

log = logging.getLogger("loupe_local.greengrass")

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class GreengrassError(Exception):
    """An error answer of the Greengrass (or IoT jobs) API."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.response = error(code, message, status)


def not_found(what: str) -> GreengrassError:
    return GreengrassError("ResourceNotFoundException", f"{what} not found", 404)


class ComponentStore:
    """Component versions by name: ``private`` (the account's) and ``public`` (AWS-provided, account ``aws``)."""

    host: StandInHost  # set by attach: artifacts are read from its S3

    def __init__(self, region: str = "us-east-1", account: str = "123456789012") -> None:
        self.private: dict[str, dict[str, dict[str, Any]]] = {}  # name -> version -> record
        self.region = region
        self.account = account
        self.public = public_catalogue(region)

    def attach(self, host: StandInHost, account: str) -> None:
        self.host = host
        self.region = host.region
        self.account = account
        self.public = public_catalogue(self.region)

    def arn(self, name: str, version: str | None = None) -> str:
        base = f"arn:aws:greengrass:{self.region}:{self.account}:components:{name}"
        return f"{base}:versions:{version}" if version else base

    def parse_arn(self, arn: str) -> tuple[str, str | None]:
        match = re.fullmatch(r"arn:aws:greengrass:[^:]*:[^:]*:components:([^:]+)(?::versions:([^:]+))?", arn)
        if not match:
            raise GreengrassError("ValidationException", f"{arn!r} is not a component ARN")
        return match.group(1), match.group(2)

    def versions(self, arn: str) -> dict[str, dict[str, Any]]:
        """The versions of the component an ARN names: AWS-provided ones live under the account ``aws``."""
        name, _ = self.parse_arn(arn)
        public = arn.split(":")[4] == "aws"
        return (self.public if public else self.private).get(name) or {}

    def record(self, arn: str) -> dict[str, Any]:
        name, version = self.parse_arn(arn)
        versions = self.versions(arn)
        if not versions:
            raise not_found(f"component {name}")
        if version is None:
            version = newest(list(versions))
        if version not in versions:
            raise not_found(f"component {name} version {version}")
        return versions[version]

    def deployable(self, name: str, version: str) -> dict[str, Any]:
        """The record a deployment may name (CreateDeployment's check of each component)."""
        rec = (self.private.get(name) or self.public.get(name) or {}).get(version)
        if rec is None:
            raise GreengrassError("ValidationException", f"component {name} version {version} does not exist")
        if rec["status"]["componentState"] != "DEPLOYABLE":
            raise GreengrassError(
                "ValidationException", f"component {name} {version} is {rec['status']['componentState']}"
            )
        return rec

    def create_component_version(self, request: AwsRequest) -> Response:
        body = request.json()
        if not body.get("inlineRecipe"):
            raise GreengrassError(
                "ValidationException", "only inlineRecipe is supported locally (no Lambda components)"
            )
        try:
            text = base64.b64decode(body["inlineRecipe"])
            recipe = yaml.safe_load(text)
        except Exception as exc:
            raise GreengrassError("ValidationException", f"the recipe is not valid JSON or YAML: {exc}") from exc
        if not isinstance(recipe, dict):
            raise GreengrassError("ValidationException", "the recipe must be a mapping")
        name, version = recipe.get("ComponentName"), str(recipe.get("ComponentVersion") or "")
        if not name or not _NAME.match(name) or name.lower().startswith("aws."):
            raise GreengrassError("ValidationException", f"invalid ComponentName {name!r}")
        if not _VERSION.match(version):
            raise GreengrassError("ValidationException", f"ComponentVersion {version!r} is not MAJOR.MINOR.PATCH")
        if version in self.private.get(name, {}):
            raise GreengrassError("ConflictException", f"component {name} version {version} already exists", 409)
        state, message, errors = "DEPLOYABLE", "", {}
        for manifest in recipe.get("Manifests") or []:
            for art in manifest.get("Artifacts") or []:
                problem = self._check_artifact(art)
                if problem:
                    state = "FAILED"
                    errors[art.get("Uri") or art.get("URI") or "?"] = problem
        if errors:
            message = "; ".join(f"{uri}: {why}" for uri, why in errors.items())
        now = time.time()
        arn = self.arn(name, version)
        rec = {
            "arn": arn,
            "componentName": name,
            "componentVersion": version,
            "creationTimestamp": now,
            "publisher": recipe.get("ComponentPublisher", ""),
            "description": recipe.get("ComponentDescription", ""),
            "recipe": recipe,
            "status": {"componentState": state, "message": message or "", "errors": errors},
            "tags": body.get("tags") or {},
        }
        self.private.setdefault(name, {})[version] = rec
        log.info("component %s %s: %s %s", name, version, state, message)
        return Response(
            201,
            {
                "arn": arn,
                "componentName": name,
                "componentVersion": version,
                "creationTimestamp": now,
                "status": rec["status"],
            },
        )

    def _check_artifact(self, art: dict[str, Any]) -> str:
        """Fetch the artifact and set its digest as the service does; a reason when that is impossible."""
        uri = art.get("Uri") or art.get("URI") or ""
        if not uri.startswith("s3://"):
            return "only s3:// artifacts are supported locally"
        bucket, _, key = uri[5:].partition("/")
        try:
            data = self.host.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            return f"cannot read the artifact: {exc}"
        from loupe.greengrass import greengrass_digest

        digest = greengrass_digest(data)
        algorithm = art.get("Algorithm") or "SHA-256"
        if algorithm != "SHA-256":
            return f"unsupported digest algorithm {algorithm}"
        if art.get("Digest") and art["Digest"] != digest:
            return f"recipe digest {art['Digest']} does not match the artifact ({digest})"
        art["Digest"], art["Algorithm"] = digest, "SHA-256"
        return ""

    def list_components(self, request: AwsRequest) -> Response:
        out = []
        scope = (request.query.get("scope") or ["PRIVATE"])[0].upper()  # the API's default scope is PRIVATE
        listed = {"PRIVATE": self.private, "PUBLIC": self.public}.get(scope)
        if listed is None:
            raise GreengrassError("ValidationException", f"scope {scope!r} is not PRIVATE or PUBLIC")
        for name, versions in sorted(listed.items()):
            latest = versions[newest(list(versions))]
            out.append(
                {
                    "arn": latest["arn"].rsplit(":versions:", 1)[0],
                    "componentName": name,
                    "latestVersion": {
                        "arn": latest["arn"],
                        "componentVersion": latest["componentVersion"],
                        "creationTimestamp": latest["creationTimestamp"],
                        "description": latest["description"],
                        "publisher": latest["publisher"],
                        "platforms": _platforms(latest["recipe"]),
                    },
                }
            )
        return Response(200, {"components": out})

    def list_component_versions(self, request: AwsRequest, arn: str) -> Response:
        name, _ = self.parse_arn(arn)
        versions = self.versions(arn)
        if not versions:
            raise not_found(f"component {name}")
        return Response(
            200,
            {
                "componentVersions": [
                    {"componentName": name, "componentVersion": v, "arn": versions[v]["arn"]}
                    for v in sorted_versions(list(versions))
                ]
            },
        )

    def describe_component(self, request: AwsRequest, arn: str) -> Response:
        rec = self.record(arn)
        return Response(
            200,
            {
                "arn": rec["arn"],
                "componentName": rec["componentName"],
                "componentVersion": rec["componentVersion"],
                "creationTimestamp": rec["creationTimestamp"],
                "publisher": rec["publisher"],
                "description": rec["description"],
                "status": rec["status"],
                "platforms": _platforms(rec["recipe"]),
                "tags": rec["tags"],
            },
        )

    def get_component(self, request: AwsRequest, arn: str) -> Response:
        rec = self.record(arn)
        fmt = (request.query.get("recipeOutputFormat") or ["JSON"])[0].upper()
        text = yaml.safe_dump(rec["recipe"], sort_keys=False) if fmt == "YAML" else json.dumps(rec["recipe"])
        return Response(
            200, {"recipeOutputFormat": fmt, "recipe": base64.b64encode(text.encode()).decode(), "tags": rec["tags"]}
        )


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def sorted_versions(versions: list[str]) -> list[str]:
    return sorted(versions, key=_key, reverse=True)


def newest(versions: list[str]) -> str:
    return sorted_versions(versions)[0]


def _platforms(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in recipe.get("Manifests") or []:
        plat = m.get("Platform") or {}
        out.append({"name": plat.get("os", "all"), "attributes": {k: str(v) for k, v in plat.items()}})
    return out


# AWS-provided components the local fleet knows (the versions and nucleus requirements named in the Greengrass
# developer guide: "Greengrass nucleus", "Disk spooler" > Dependencies). No artifacts: a local core device
# provides them itself (see DEVICES.md).
NUCLEUS_VERSIONS = ("2.10.3", "2.12.6", "2.13.0", "2.14.0")
DISK_SPOOLER_VERSIONS = {"1.0.5": ">=2.11.0 <2.15.0", "1.0.6": ">=2.11.0 <2.16.0"}
_SPOOLER_DEFAULTS = {"storageType": "Memory", "maxSizeInBytes": 2621440, "keepQos0WhenOffline": False}


def public_catalogue(region: str) -> dict[str, dict[str, dict[str, Any]]]:
    def record(recipe: dict[str, Any]) -> dict[str, Any]:
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        return {
            "arn": f"arn:aws:greengrass:{region}:aws:components:{name}:versions:{version}",
            "componentName": name,
            "componentVersion": version,
            "creationTimestamp": 1_700_000_000.0,
            "publisher": "AWS",
            "description": recipe["ComponentDescription"],
            "recipe": recipe,
            "status": {"componentState": "DEPLOYABLE", "message": "", "errors": {}},
            "tags": {},
        }

    out: dict[str, dict[str, dict[str, Any]]] = {"aws.greengrass.Nucleus": {}, "aws.greengrass.DiskSpooler": {}}
    for v in NUCLEUS_VERSIONS:
        out["aws.greengrass.Nucleus"][v] = record(
            {
                "RecipeFormatVersion": "2020-01-25",
                "ComponentName": "aws.greengrass.Nucleus",
                "ComponentVersion": v,
                "ComponentType": "aws.greengrass.nucleus",
                "ComponentDescription": "Core functionality for device side orchestration of deployments and "
                "lifecycle management for execution of Greengrass components and applications.",
                "ComponentPublisher": "AWS",
                "ComponentConfiguration": {"DefaultConfiguration": {"mqtt": {"spooler": dict(_SPOOLER_DEFAULTS)}}},
                "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {}, "Artifacts": []}],
            }
        )
    for v, requirement in DISK_SPOOLER_VERSIONS.items():
        out["aws.greengrass.DiskSpooler"][v] = record(
            {
                "RecipeFormatVersion": "2020-01-25",
                "ComponentName": "aws.greengrass.DiskSpooler",
                "ComponentVersion": v,
                "ComponentType": "aws.greengrass.plugin",
                "ComponentDescription": "Persistent storage for messages spooled from the core device to AWS IoT Core.",
                "ComponentPublisher": "AWS",
                "ComponentDependencies": {
                    "aws.greengrass.Nucleus": {"VersionRequirement": requirement, "DependencyType": "HARD"}
                },
                "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {}, "Artifacts": []}],
            }
        )
    return out
