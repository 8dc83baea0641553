"""The model package to deploy (model registry reads) and the workflow's first step: what to deploy, and where."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from loupe import recipe_values
from loupe.aws_clients import IoT, SageMakerRegistry
from loupe.aws_errors import is_not_found
from loupe.deployment.errors import DeploymentError, PackageInvalid

DEVICES_IN_STATE = 50  # per-device results carried in the workflow state (and its record) at most


@dataclass
class Package:
    arn: str
    group: str
    version: int
    status: str
    model_data_url: str
    digests: dict[str, str]
    dataset_version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        return str(self.version)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def split_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise PackageInvalid(f"{url!r} is not an s3://bucket/key URL")
    bucket, _, key = url[5:].partition("/")
    if not bucket or not key:
        raise PackageInvalid(f"{url!r} is not an s3://bucket/key URL")
    return bucket, key


def describe_package(sm: SageMakerRegistry, package_arn: str) -> Package:
    try:
        d = sm.describe_model_package(ModelPackageName=package_arn)
    except Exception as exc:
        raise PackageInvalid(f"cannot describe model package {package_arn}: {exc}") from exc
    containers = (d.get("InferenceSpecification") or {}).get("Containers") or []
    url = containers[0].get("ModelDataUrl", "") if containers else ""
    if not url:
        raise PackageInvalid(f"model package {package_arn} has no ModelDataUrl")
    split_s3_url(url)
    meta = dict(d.get("CustomerMetadataProperties") or {})
    digests = {k: v for k, v in meta.items() if k.endswith("_sha256") and v}
    return Package(
        arn=d["ModelPackageArn"],
        group=d.get("ModelPackageGroupName", ""),
        version=int(d.get("ModelPackageVersion") or 0),
        status=d.get("ModelApprovalStatus", ""),
        model_data_url=url,
        digests=digests,
        dataset_version=str(meta.get("dataset_version", "")),
        metadata=meta,
    )


def check_recipe_values(package: Package) -> None:
    """What the package contributes to the ``com.loupe.model`` recipe, against its whitelist
    (:mod:`loupe.recipe_values`): its ARN, ``ModelDataUrl`` and registered digests. Checked at every deployment, not
    only at registration: ``UpdateModelPackage`` can change the metadata of a registered package."""
    try:
        recipe_values.check("model package ARN", package.arn, "ModelPackageArn")
        recipe_values.check("S3 URI", package.model_data_url, "ModelDataUrl")
        recipe_values.check_package_metadata(package.metadata)
    except recipe_values.RecipeValueError as exc:
        raise PackageInvalid(f"model package {package.arn} refused: {exc}") from exc


def approved_packages(sm: SageMakerRegistry, group: str) -> list[dict[str, Any]]:
    """Approved packages of the group, newest first."""
    out: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "ModelApprovalStatus": "Approved",
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 100,
        }
        if token:
            kwargs["NextToken"] = token
        page = sm.list_model_packages(**kwargs)
        out.extend(s for s in page.get("ModelPackageSummaryList", []) if s.get("ModelApprovalStatus") == "Approved")
        token = page.get("NextToken")
        if not token:
            break
    out.sort(key=lambda s: (s.get("ModelPackageVersion") or 0, str(s.get("CreationTime"))), reverse=True)
    return out


def thing_group_members(iot: IoT, group: str) -> list[str]:
    things: list[str] = []
    token = None
    try:
        while True:
            kwargs: dict[str, Any] = {"thingGroupName": group, "recursive": True}
            if token:
                kwargs["nextToken"] = token
            page = iot.list_things_in_thing_group(**kwargs)
            things.extend(page.get("things", []))
            token = page.get("nextToken")
            if not token:
                break
    except Exception as exc:
        if is_not_found(exc):
            raise DeploymentError(f"thing group {group} does not exist") from exc
        raise
    return sorted(set(things))


def resolve(sm: SageMakerRegistry, iot: IoT, request: dict[str, Any], thing_group: str) -> dict[str, Any]:
    """What to deploy and where. ``status`` is ``ready`` or ``nothing_to_deploy`` (with a reason)."""
    asked = request.get("request") or {}
    arn = asked.get("package_arn")
    devices = thing_group_members(iot, thing_group)
    base = {
        "thing_group": thing_group,
        # a large fleet is not carried in the state (256 KB): its outcomes come from the deployment's IoT job
        "devices": devices if len(devices) <= DEVICES_IN_STATE else [],
        "device_count": len(devices),
        "mode": asked.get("mode") or "approved",
    }
    if not arn:
        return {**base, "status": "nothing_to_deploy", "reason": asked.get("reason") or "no approved package"}
    package = describe_package(sm, arn)
    check_recipe_values(package)
    if package.status != "Approved":
        return {
            **base,
            "status": "nothing_to_deploy",
            "reason": f"package {package.version} is {package.status or 'not approved'}, not Approved",
            "package": package.to_json(),
        }
    if not devices:
        return {
            **base,
            "status": "nothing_to_deploy",
            "reason": f"thing group {thing_group} has no devices",
            "package": package.to_json(),
        }
    return {**base, "status": "ready", "reason": "", "package": package.to_json()}
