"""Edge deployment: from an approved model package to a verified Greengrass deployment on a thing group.

Each public function is one step of ``statemachines/edge_deployment.asl.json`` (through the thin
``functions/deployment_tasks`` handler) or of ``functions/model_package_events``. All take their AWS clients
as arguments and return JSON-serialisable dicts, so the state machine carries the state between steps.

Registered digests (``CustomerMetadataProperties`` of the package, hex SHA-256):
``package_sha256`` (the ``model.tar.gz`` at ``ModelDataUrl``, required), ``model_sha256``,
``model_int8_sha256``, ``model_card_sha256`` (files inside it, checked when present), and ``dataset_version``.

Design notes:
- The verified ``model.tar.gz`` is repacked as a deterministic ZIP (Greengrass' ``Unarchive`` only knows ZIP) and
  uploaded to ``edge/artifacts/com.loupe.model/<version>/model.zip``; the recipe carries that ZIP's digest, so the
  service refuses other bytes at that key and devices verify what they download.
- The ``com.loupe.model`` recipe comes from the template shipped inside the deployed ``com.loupe.inference``
  artifact (``edge_component/model/recipe.yaml``), so the pointer contract and the code reading it travel together.
- One workflow run per status change: the execution name is derived from (package ARN, status, LastModifiedTime),
  so a redelivered event starts nothing; a re-approval after a rejection is a new change and deploys again.
- The thing group's ``CURRENT`` package is what completed on at least one device; ``PENDING`` is the deployment
  still rolling out. Rejecting either goes back to the newest package that ran before and is still Approved.
- Revise, never replace: a thing group has one Greengrass deployment and a new one removes what it lacks, so the
  deployment starts from the group's current one and changes only ``com.loupe.*`` components.
- One rollout at a time per thing group (``TARGET#<group>`` / ``LOCK``, a conditional write that expires); once a
  run holds it, the registry decides: an approval older than the newest Approved package is ``SUPERSEDED``.
- Deployed means serving: a device is ``COMPLETED`` when Greengrass says so *and* its health messages report the
  new model version (``loupe.fleet_serving``); else ``NOT_SERVING`` at the deadline.
- Outcomes come from the deployment's IoT job, paged; per-device results live in the table, not in the state.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from loupe import greengrass as gg_mod

MAX_PACKAGE_BYTES = 512 * 1024 * 1024
FILE_DIGEST_KEYS = {
    "model.onnx": "model_sha256",
    "model_int8.onnx": "model_int8_sha256",
    "model_card.json": "model_card_sha256",
}
SUCCEEDED = {"SUCCEEDED", "COMPLETED"}
DEPLOYED_OUTCOMES = ("COMPLETED", "PARTIAL", "DEPLOYED_NOT_SERVING")  # the components reached some devices
FINAL_FAILED = {"FAILED", "REJECTED", "CANCELED", "TIMED_OUT"}


class DeploymentError(RuntimeError):
    """A refused deployment step; ``code`` is the error name the state machine catches."""

    code = "DeploymentError"


class PackageInvalid(DeploymentError):
    code = "PackageInvalid"


class ArtifactDigestMismatch(DeploymentError):
    code = "ArtifactDigestMismatch"


class ComponentMissing(DeploymentError):
    code = "ComponentMissing"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class DeploymentSettings:
    """What the workflow is told by template.yaml (parameters), validated once."""

    artifact_bucket: str
    raw_bucket: str
    thing_group: str
    deployments_table: str
    model_package_group: str = ""
    rollout_base_rate: int = 5
    rollout_increment_factor: float = 2.0
    abort_failure_percent: int = 20
    component_update_timeout: int = 60
    inference_version: str = ""
    nucleus_version: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str]) -> DeploymentSettings:
        missing = [k for k in ("ARTIFACT_BUCKET", "THING_GROUP_NAME", "DEPLOYMENTS_TABLE") if not env.get(k)]
        if missing:
            raise DeploymentError(f"missing configuration: {', '.join(missing)}")
        try:
            s = cls(
                artifact_bucket=env["ARTIFACT_BUCKET"],
                raw_bucket=env.get("RAW_BUCKET", ""),
                thing_group=env["THING_GROUP_NAME"],
                deployments_table=env["DEPLOYMENTS_TABLE"],
                model_package_group=env.get("MODEL_PACKAGE_GROUP", ""),
                rollout_base_rate=int(env.get("ROLLOUT_BASE_RATE", "5")),
                rollout_increment_factor=float(env.get("ROLLOUT_INCREMENT_FACTOR", "2")),
                abort_failure_percent=int(env.get("ABORT_FAILURE_PERCENT", "20")),
                component_update_timeout=int(env.get("COMPONENT_UPDATE_TIMEOUT", "60")),
                inference_version=env.get("INFERENCE_COMPONENT_VERSION", ""),
                nucleus_version=env.get("NUCLEUS_COMPONENT_VERSION", "").strip(),
            )
        except ValueError as exc:
            raise DeploymentError(f"invalid deployment configuration: {exc}") from exc
        if not 1 <= s.rollout_base_rate <= 1000:
            raise DeploymentError("ROLLOUT_BASE_RATE must be 1..1000 devices per minute")
        if not 1.1 <= s.rollout_increment_factor <= 5:
            raise DeploymentError("ROLLOUT_INCREMENT_FACTOR must be 1.1..5")
        if not 0 < s.abort_failure_percent <= 100:
            raise DeploymentError("ABORT_FAILURE_PERCENT must be 1..100")
        if s.nucleus_version:
            try:
                gg_mod.parse_version(s.nucleus_version)
            except gg_mod.GreengrassError as exc:
                raise DeploymentError(f"NUCLEUS_COMPONENT_VERSION: {exc}") from exc
        return s


# ------------------------------------------------------------------ packages
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


def describe_package(sm: Any, package_arn: str) -> Package:
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
    digests = {k: v.lower() for k, v in meta.items() if k.endswith("_sha256") and v}
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


def approved_packages(sm: Any, group: str) -> list[dict[str, Any]]:
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


# ------------------------------------------------------------------ step: resolve
def resolve(sm: Any, iot: Any, request: dict[str, Any], settings: DeploymentSettings) -> dict[str, Any]:
    """What to deploy and where. ``status`` is ``ready`` or ``nothing_to_deploy`` (with a reason)."""
    asked = request.get("request") or {}
    arn = asked.get("package_arn")
    devices = thing_group_members(iot, settings.thing_group)
    base = {
        "thing_group": settings.thing_group,
        # a large fleet is not carried in the state (256 KB): its outcomes come from the deployment's IoT job
        "devices": devices if len(devices) <= DEVICES_IN_STATE else [],
        "device_count": len(devices),
        "mode": asked.get("mode") or "approved",
    }
    if not arn:
        return {**base, "status": "nothing_to_deploy", "reason": asked.get("reason") or "no approved package"}
    package = describe_package(sm, arn)
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
            "reason": f"thing group {settings.thing_group} has no devices",
            "package": package.to_json(),
        }
    return {**base, "status": "ready", "reason": "", "package": package.to_json()}


def thing_group_members(iot: Any, group: str) -> list[str]:
    things, token = [], None
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
    except iot.exceptions.ResourceNotFoundException as exc:
        raise DeploymentError(f"thing group {group} does not exist") from exc
    return sorted(set(things))


# ------------------------------------------------------------------ step: verify
def _fetch(s3: Any, url: str) -> bytes:
    bucket, key = split_s3_url(url)
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise PackageInvalid(f"cannot read {url}: {exc}") from exc
    if int(obj.get("ContentLength") or 0) > MAX_PACKAGE_BYTES:
        raise PackageInvalid(f"{url} is larger than {MAX_PACKAGE_BYTES} bytes")
    return obj["Body"].read()


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


def verify(s3: Any, package_json: dict[str, Any]) -> dict[str, Any]:
    package = Package(**package_json)
    data = _fetch(s3, package.model_data_url)
    files = check_digests(package, data)
    return {
        "package_sha256": hashlib.sha256(data).hexdigest(),
        "files": {name: hashlib.sha256(body).hexdigest() for name, body in sorted(files.items())},
        "bytes": len(data),
    }


# ------------------------------------------------------------------ step: components
def publish_model_component(
    gg: Any, s3: Any, package_json: dict[str, Any], inference: dict[str, Any], settings: DeploymentSettings
) -> dict[str, Any]:
    """Re-verify the package bytes, repack them as the component's ZIP and create ``com.loupe.model``.

    The recipe comes from the template shipped with the deployed ``com.loupe.inference`` version. The version
    is ``1.<package version>.<patch>``; an existing version holding the same bytes is reused, one holding other
    bytes is never overwritten (the patch moves on)."""
    package = Package(**package_json)
    data = _fetch(s3, package.model_data_url)
    files = check_digests(package, data)  # the bytes we publish are the bytes we verified
    shipped = gg_mod.model_component_files(gg, s3, inference["arn"])
    zipped = dict(files)
    if gg_mod.MODEL_CHECK_MEMBER in shipped:  # the device-side install check travels with the model
        zipped[gg_mod.MODEL_CHECK_FILE] = shipped[gg_mod.MODEL_CHECK_MEMBER]
    archive = gg_mod.deterministic_zip(zipped)
    digest = gg_mod.greengrass_digest(archive)
    served = model_version_of(files, package)
    for patch in range(0, 100):
        version = gg_mod.model_component_version(package.version, patch)
        existing = gg_mod.component_arn(gg, gg_mod.MODEL_COMPONENT, version)
        if existing is None:
            break
        recipe = gg_mod.get_recipe(gg, existing)
        if [a.get("Digest") for a in gg_mod.recipe_artifacts(recipe)] == [digest]:
            return {
                "name": gg_mod.MODEL_COMPONENT,
                "version": version,
                "arn": existing,
                "reused": True,
                "model_version": served,
            }
    else:
        raise DeploymentError(f"no free {gg_mod.MODEL_COMPONENT} version for package {package.version}")
    key = gg_mod.artifact_key(gg_mod.MODEL_COMPONENT, version, "model.zip")
    template = shipped[gg_mod.MODEL_TEMPLATE_MEMBER].decode()
    recipe = gg_mod.render_model_recipe(
        template,
        {
            "ComponentVersion": version,
            "ModelVersion": served,
            "ModelPackageArn": package.arn,
            "ArtifactUri": f"s3://{settings.artifact_bucket}/{key}",
            "ModelSha256": hashlib.sha256(files["model.onnx"]).hexdigest(),
            "ModelInt8Sha256": hashlib.sha256(files["model_int8.onnx"]).hexdigest()
            if "model_int8.onnx" in files
            else "",
        },
    )
    for art in gg_mod.recipe_artifacts(recipe):
        art["Algorithm"], art["Digest"] = "SHA-256", digest  # the service refuses other bytes at that key
    s3.put_object(Bucket=settings.artifact_bucket, Key=key, Body=archive, ContentType="application/zip")
    created = gg_mod.create_component(gg, recipe)
    return {**created, "reused": False, "model_version": served}


def model_version_of(files: dict[str, bytes], package: Package) -> str:
    """The model version results will report: the model card's ``version``, else the package version."""
    try:
        card = json.loads(files.get("model_card.json") or b"{}")
    except ValueError as exc:
        raise PackageInvalid(f"model_card.json is not valid JSON: {exc}") from exc
    version = card.get("version") if isinstance(card, dict) else None
    return str(version) if version not in (None, "") else package.model_version


def inference_component(gg: Any, settings: DeploymentSettings) -> dict[str, Any]:
    """The published ``com.loupe.inference`` version to deploy (pinned, or the newest deployable)."""
    name = gg_mod.INFERENCE_COMPONENT
    if settings.inference_version:
        arn = gg_mod.component_arn(gg, name, settings.inference_version)
        if arn is None:
            raise ComponentMissing(f"{name} {settings.inference_version} (pinned) is not published")
        return {"name": name, "version": settings.inference_version, "arn": arn}
    found = gg_mod.latest_deployable(gg, name)
    if found is None:
        raise ComponentMissing(f"{name} is not published: publish edge_component/ first (loupe edge publish)")
    return {"name": name, "version": found[0], "arn": found[1]}


# ------------------------------------------------------------------ step: deployment
def deployment_document(
    target_arn: str,
    name: str,
    model: dict[str, Any],
    inference: dict[str, Any],
    settings: DeploymentSettings,
    timeout_seconds: int,
) -> dict[str, Any]:
    inference_entry: dict[str, Any] = {"componentVersion": inference["version"]}
    if settings.raw_bucket:
        inference_entry["configurationUpdate"] = {
            "merge": json.dumps({"settings": {"feedback": {"bucket": settings.raw_bucket}}})
        }
    return {
        "targetArn": target_arn,
        "deploymentName": name[:256],
        "components": {
            model["name"]: {"componentVersion": model["version"]},
            inference["name"]: inference_entry,
        },
        "deploymentPolicies": {
            "failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {
                "timeoutInSeconds": settings.component_update_timeout,
                "action": "NOTIFY_COMPONENTS",
            },
            "configurationValidationPolicy": {"timeoutInSeconds": 30},
        },
        "iotJobConfiguration": {
            "jobExecutionsRolloutConfig": {
                "exponentialRate": {
                    "baseRatePerMinute": settings.rollout_base_rate,
                    "incrementFactor": settings.rollout_increment_factor,
                    "rateIncreaseCriteria": {"numberOfSucceededThings": max(1, settings.rollout_base_rate)},
                },
                "maximumPerMinute": max(settings.rollout_base_rate, 50),
            },
            "abortConfig": {
                "criteriaList": [
                    {
                        "failureType": "ALL",
                        "action": "CANCEL",
                        "thresholdPercentage": float(settings.abort_failure_percent),
                        "minNumberOfExecutedThings": 1,
                    }
                ]
            },
            "timeoutConfig": {"inProgressTimeoutInMinutes": max(1, -(-int(timeout_seconds) // 60))},
        },
    }


def start_deployment(
    gg: Any,
    iot: Any,
    request: dict[str, Any],
    settings: DeploymentSettings,
    timeout_seconds: int,
    now: float | None = None,
) -> dict[str, Any]:
    """CreateDeployment to the thing group (idempotent per workflow run through ``clientToken``)."""
    group = iot.describe_thing_group(thingGroupName=settings.thing_group)
    package = Package(**request["package"])
    run = request.get("run_id") or f"v{package.version}"
    doc = deployment_document(
        group["thingGroupArn"],
        f"loupe model {package.model_version} ({request.get('mode', 'approved')})",
        request["model"],
        request["inference"],
        settings,
        timeout_seconds,
    )
    # Revise, never replace: the new deployment replaces the target's current one on every device, so it
    # carries every component of the current one; only Loupe's components (and their configuration) change.
    current = gg_mod.latest_deployment(gg, group["thingGroupArn"])
    doc["components"] = gg_mod.revise_components(current, doc["components"])
    # Results the component handed to the nucleus (PublishToIoTCore) wait in the nucleus' spooler while the
    # device is offline: on disk only with aws.greengrass.DiskSpooler and the nucleus' mqtt.spooler setting.
    doc["components"], spooler = gg_mod.plan_disk_spooling(
        gg, group["thingGroupArn"].split(":")[3], doc["components"], settings.nucleus_version
    )
    token = hashlib.sha256(f"{package.arn}|{run}".encode()).hexdigest()[:64]
    out = gg.create_deployment(**doc, clientToken=token)
    started = time.time() if now is None else now
    timeout = max(1, int(timeout_seconds))
    return {
        "deployment_id": out["deploymentId"],
        "iot_job_id": out.get("iotJobId", ""),
        "revised": (current or {}).get("deploymentId", ""),
        "kept": sorted(n for n in doc["components"] if not n.startswith(gg_mod.COMPONENT_PREFIX)),
        "spooler": spooler,
        "model_version": str((request.get("model") or {}).get("model_version") or package.model_version),
        "target_arn": group["thingGroupArn"],
        "started": started,
        "deadline": started + timeout,
        "poll_seconds": poll_interval(timeout),
    }


def poll_interval(timeout_seconds: int) -> int:
    """Seconds between status checks: about 20 checks per timeout, between 1 s and 60 s."""
    return int(min(60, max(1, timeout_seconds // 20)))


def device_outcomes(
    gg: Any,
    deployment_id: str,
    devices: list[str],
    deadline: float,
    now: float | None = None,
    serving: Any = None,
    model_version: str = "",
) -> dict[str, Any]:
    """Per-device outcome of one deployment: COMPLETED, FAILED, CANCELED, TIMED_OUT, NOT_SERVING or PENDING.

    With ``serving`` (thing -> the model version the device last reported serving, from its health messages) a
    device is COMPLETED only once Greengrass reports the deployment done *and* the device serves
    ``model_version``; done but silent until the deadline is NOT_SERVING ("deployed, not serving")."""
    now = time.time() if now is None else now
    result: dict[str, dict[str, Any]] = {}
    for thing in devices:
        result[thing] = _device_outcome(gg, deployment_id, thing)
        if serving is not None and model_version and result[thing]["status"] == "COMPLETED":
            reported = serving(thing)
            if reported != model_version:
                result[thing] = {
                    "status": "PENDING",
                    "reason": "",
                    "detail": "deployed, waiting for the device to report serving",
                    "deployed": True,
                    "serving": reported or "",
                }
    pending = [t for t, r in result.items() if r["status"] == "PENDING"]
    timed_out = bool(pending) and now >= deadline
    if timed_out:
        for thing in pending:
            if result[thing].get("deployed"):
                reported = result[thing].get("serving") or "nothing"
                result[thing] = {
                    "status": "NOT_SERVING",
                    "reason": f"deployed, not serving: {thing} reported serving {reported}, not model "
                    f"{model_version}, before the deployment timeout",
                    "detail": "deployed",
                }
                continue
            result[thing] = {
                "status": "TIMED_OUT",
                "reason": f"no result from {thing} before the deployment timeout (device offline or slow)",
                "detail": result[thing].get("detail", ""),
            }
    counts: dict[str, int] = {}
    for r in result.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    done = not pending or timed_out
    return {
        "done": done,
        "devices": result,
        "counts": counts,
        "all_completed": counts.get("COMPLETED", 0) == len(devices),
    }


JOB_PAGE = 250  # ListJobExecutionsForJob's largest page
DEVICES_IN_STATE = 50  # per-device results carried in the workflow state (and its record) at most
REASONS_FETCHED = 20  # failed devices whose Greengrass reason is looked up (ListEffectiveDeployments) per run
_JOB_FINAL = {"SUCCEEDED": "COMPLETED", "FAILED": "FAILED", "REJECTED": "FAILED", "CANCELED": "CANCELED"}
_JOB_FINAL |= {"TIMED_OUT": "TIMED_OUT", "REMOVED": "CANCELED"}


def job_outcomes(
    iot: Any,
    gg: Any,
    deployment: dict[str, Any],
    deadline: float,
    serving_many: Any = None,
    table: Any = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Per-device outcomes for a fleet of any size, from the deployment's IoT job (Greengrass runs each deployment
    as one; ListJobExecutionsForJob pages 250 devices a call) and, for the devices done, what they report serving
    (``serving_many``: BatchGetItem, 100 a call). Nothing here is one call per device per poll.

    While the rollout goes on the result is counts only; when it is done, every device's outcome is written to
    the deployments table (``DEPLOYMENT#<id>`` / ``DEVICE#<thing>``) and the workflow state keeps at most
    ``DEVICES_IN_STATE`` of them (the ones that did not complete first), so the state stays far below 256 KB."""
    now = time.time() if now is None else now
    calls = {"ListJobExecutionsForJob": 0, "BatchGetItem": 0, "ListEffectiveDeployments": 0}
    result: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        kwargs: dict[str, Any] = {"jobId": deployment["iot_job_id"], "maxResults": JOB_PAGE}
        if token:
            kwargs["nextToken"] = token
        page = iot.list_job_executions_for_job(**kwargs)
        calls["ListJobExecutionsForJob"] += 1
        for row in page.get("executionSummaries", []):
            thing = str(row.get("thingArn", "")).rsplit("/", 1)[-1]
            status = (row.get("jobExecutionSummary") or {}).get("status", "")
            final = _JOB_FINAL.get(status)
            result[thing] = {"status": final or "PENDING", "reason": "", "detail": status}
        token = page.get("nextToken")
        if not token:
            break
    want = str(deployment.get("model_version") or "")
    done_things = sorted(t for t, r in result.items() if r["status"] == "COMPLETED")
    if serving_many is not None and want and done_things:
        reported = serving_many(done_things)
        calls["BatchGetItem"] += -(-len(done_things) // 100)
        for thing in done_things:
            if reported.get(thing) != want:
                result[thing] = {
                    "status": "PENDING",
                    "reason": "",
                    "detail": "deployed, waiting for the device to report serving",
                    "deployed": True,
                    "serving": reported.get(thing, ""),
                }
    pending = [t for t, r in result.items() if r["status"] == "PENDING"]
    timed_out = bool(pending) and now >= deadline
    done = not pending or timed_out
    if timed_out:
        for thing in pending:
            r = result[thing]
            if r.get("deployed"):
                result[thing] = {
                    "status": "NOT_SERVING",
                    "reason": f"deployed, not serving: {thing} reported serving {r.get('serving') or 'nothing'}, "
                    f"not model {want}, before the deployment timeout",
                    "detail": "deployed",
                }
            else:
                result[thing] = {
                    "status": "TIMED_OUT",
                    "reason": f"no result from {thing} before the deployment timeout (device offline or slow)",
                    "detail": r.get("detail", ""),
                }
    counts: dict[str, int] = {}
    for r in result.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    out: dict[str, Any] = {"done": done, "counts": counts, "all_completed": counts.get("COMPLETED", 0) == len(result)}
    if done:
        failed = sorted(t for t, r in result.items() if r["status"] == "FAILED")[:REASONS_FETCHED]
        for thing in failed:
            found = _device_outcome(gg, deployment["deployment_id"], thing)
            calls["ListEffectiveDeployments"] += 1
            if found.get("reason"):
                result[thing]["reason"] = found["reason"]
        if table is not None:
            with table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
                for thing, r in result.items():
                    batch.put_item(
                        Item={
                            "pk": f"DEPLOYMENT#{deployment['deployment_id']}",
                            "sk": f"DEVICE#{thing}",
                            "status": r["status"],
                            "reason": r.get("reason") or "",
                            "model_version": want,
                            "updated": utc_now(),
                        }
                    )
        shown = sorted(result, key=lambda t: (result[t]["status"] == "COMPLETED", t))[:DEVICES_IN_STATE]
        out["devices"] = {t: {k: v for k, v in result[t].items() if k in ("status", "reason")} for t in shown}
        out["devices_total"] = len(result)
    out["calls"] = calls
    return out


def _device_outcome(gg: Any, deployment_id: str, thing: str) -> dict[str, Any]:
    try:
        entries = list(
            gg_mod._paged(gg, "list_effective_deployments", "effectiveDeployments", coreDeviceThingName=thing)
        )
    except Exception as exc:  # an unknown core device has never connected: still pending
        return {"status": "PENDING", "reason": "", "detail": f"not reachable: {type(exc).__name__}"}
    for entry in entries:
        if entry.get("deploymentId") != deployment_id:
            continue
        status = entry.get("coreDeviceExecutionStatus", "")
        reason = entry.get("reason") or ""
        details = entry.get("statusDetails") or {}
        if details.get("errorStack"):
            reason = f"{reason} [{' > '.join(details['errorStack'])}]".strip()
        if status in SUCCEEDED:
            return {"status": "COMPLETED", "reason": reason, "detail": status}
        if status in FINAL_FAILED:
            mapped = {"REJECTED": "FAILED"}.get(status, status)
            return {"status": mapped, "reason": reason or status, "detail": status}
        return {"status": "PENDING", "reason": "", "detail": status}
    return {"status": "PENDING", "reason": "", "detail": "not notified yet"}


# ------------------------------------------------------------------ one rollout at a time per thing group
def acquire_lock(table: Any, thing_group: str, run_id: str, hold_seconds: int, now: float | None = None) -> bool:
    """Take the thing group's rollout lock (a conditional write): free, expired, or already ours."""
    now = time.time() if now is None else now
    try:
        table.put_item(
            Item={
                "pk": f"TARGET#{thing_group}",
                "sk": "LOCK",
                "owner": run_id,
                "expires": int(now + hold_seconds),
                "acquired": utc_now(),
            },
            ConditionExpression="attribute_not_exists(pk) OR #owner = :me OR #expires < :now",
            ExpressionAttributeNames={"#owner": "owner", "#expires": "expires"},
            ExpressionAttributeValues={":me": run_id, ":now": int(now)},
        )
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def release_lock(table: Any, thing_group: str, run_id: str) -> None:
    with contextlib.suppress(table.meta.client.exceptions.ConditionalCheckFailedException):
        table.delete_item(
            Key={"pk": f"TARGET#{thing_group}", "sk": "LOCK"},
            ConditionExpression="#owner = :me",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":me": run_id},
        )


def lock_and_decide(sm: Any, table: Any, state: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Serialize rollouts to the thing group, then decide with the registry as it is *now*.

    Returns ``lock`` (``held``, ``wait_seconds``) and, once held, ``status``: ``ready``, ``superseded`` (an
    approval of a package older than the newest Approved one: the fleet serves the newest, whatever order the
    events came in) or ``nothing_to_deploy`` (the package is no longer Approved)."""
    group = state["thing_group"]
    run_id = state.get("run_id") or "manual"
    timeout = int(state.get("timeout_seconds") or 900)
    hold = 2 * timeout + 900  # a run that died (stopped execution) frees the group after this
    wait = poll_interval(timeout)  # as often as a rollout's own status checks: 1 to 60 s
    if not acquire_lock(table, group, run_id, hold, now):
        holder = (table.get_item(Key={"pk": f"TARGET#{group}", "sk": "LOCK"}, ConsistentRead=True).get("Item")) or {}
        return {"lock": {"held": False, "wait_seconds": wait, "holder": holder.get("owner", "")}}
    package = Package(**state["package"])
    out: dict[str, Any] = {"lock": {"held": True, "wait_seconds": wait}, "status": "ready", "reason": ""}
    current = describe_package(sm, package.arn)
    if current.status != "Approved":
        return {**out, "status": "nothing_to_deploy", "reason": f"package {package.version} is now {current.status}"}
    if state.get("mode", "approved") == "approved":
        newest = next(iter(approved_packages(sm, package.group)), None)
        if (
            newest
            and newest["ModelPackageArn"] != package.arn
            and int(newest.get("ModelPackageVersion") or 0) > int(package.version)
        ):
            return {
                **out,
                "status": "superseded",
                "reason": f"package {newest.get('ModelPackageVersion')} is a newer Approved package; the late "
                f"approval of package {package.version} does not replace it",
            }
    return out


# ------------------------------------------------------------------ records and messages
def record(table: Any, state: dict[str, Any], outcome: str, reason: str = "") -> dict[str, Any]:
    """Write the run's package → deployment → per-device outcome to the deployments table; returns a summary."""
    now = utc_now()
    package = state.get("package") or {}
    deployment = state.get("deployment") or {}
    devices = (state.get("outcomes") or {}).get("devices") or {}
    run_id = state.get("run_id") or "manual"
    summary = {
        "outcome": outcome,
        "reason": reason,
        "mode": state.get("mode", "approved"),
        "thing_group": state.get("thing_group", ""),
        "package_arn": package.get("arn", ""),
        "model_version": str(package.get("version", "")),
        "deployment_id": deployment.get("deployment_id", ""),
        "components": {k: (state.get(k) or {}).get("version", "") for k in ("model", "inference") if state.get(k)},
        "kept": list(deployment.get("kept") or []),
        "spooler": dict(deployment.get("spooler") or {}),
        "devices": {t: {"status": d["status"], "reason": d.get("reason", "")} for t, d in devices.items()},
        "devices_total": int((state.get("outcomes") or {}).get("devices_total") or len(devices)),
        "run_id": run_id,
        "finished": now,
        "finished_epoch": f"{time.time():.3f}",
    }
    pk = f"PACKAGE#{package.get('arn') or 'none'}"
    table.put_item(Item={"pk": pk, "sk": f"RUN#{run_id}", **_ddb(summary)})
    if summary["deployment_id"]:
        for thing, d in summary["devices"].items():
            table.put_item(
                Item={
                    "pk": f"DEPLOYMENT#{summary['deployment_id']}",
                    "sk": f"DEVICE#{thing}",
                    "status": d["status"],
                    "reason": d["reason"] or "",
                    "package_arn": summary["package_arn"],
                    "model_version": summary["model_version"],
                    "updated": now,
                }
            )
    table.put_item(Item={"pk": f"TARGET#{summary['thing_group']}", "sk": f"RUN#{now}#{run_id}", **_ddb(summary)})
    if outcome in DEPLOYED_OUTCOMES and summary["package_arn"]:
        mark_target(table, summary["thing_group"], package, summary["deployment_id"], run_id)
    if summary["deployment_id"]:
        clear_pending(table, summary["thing_group"], summary["deployment_id"])
    if (state.get("lock") or {}).get("held"):
        release_lock(table, summary["thing_group"], run_id)
    summary["subject"] = subject(summary)
    summary["message"] = message(summary)
    return summary


def mark_target(table: Any, thing_group: str, package: dict[str, Any], deployment_id: str, run_id: str) -> None:
    """The package the thing group runs: written when a deployment completed on at least one device (a failed,
    rolled-back deployment leaves the previous one in place). A rejection of this package is undone."""
    table.put_item(
        Item={
            "pk": f"TARGET#{thing_group}",
            "sk": "CURRENT",
            "package_arn": package.get("arn", ""),
            "model_version": str(package.get("version", "")),
            "deployment_id": deployment_id,
            "run_id": run_id,
            "updated": utc_now(),
        }
    )


def clear_pending(table: Any, thing_group: str, deployment_id: str) -> None:
    """The deployment has an outcome: it is no longer pending (unless a newer one replaced it already)."""
    with contextlib.suppress(table.meta.client.exceptions.ConditionalCheckFailedException):
        table.delete_item(
            Key={"pk": f"TARGET#{thing_group}", "sk": "PENDING"},
            ConditionExpression="deployment_id = :d",
            ExpressionAttributeValues={":d": deployment_id},
        )


def current_target(table: Any, thing_group: str, which: str = "CURRENT") -> dict[str, Any] | None:
    """``CURRENT``: the package the group runs; ``PENDING``: the package of the newest deployment started."""
    return table.get_item(Key={"pk": f"TARGET#{thing_group}", "sk": which}, ConsistentRead=True).get("Item")


def mark_pending(table: Any, thing_group: str, package: dict[str, Any], deployment_id: str, run_id: str) -> None:
    """The deployment just created (a rejection while it is still rolling out must undo it too)."""
    table.put_item(
        Item={
            "pk": f"TARGET#{thing_group}",
            "sk": "PENDING",
            "package_arn": package.get("arn", ""),
            "deployment_id": deployment_id,
            "run_id": run_id,
            "updated": utc_now(),
        }
    )


def deployed_history(table: Any, thing_group: str, limit: int = 50) -> list[str]:
    """Package ARNs that completed on the thing group, newest first (each once)."""
    out = table.query(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :run)",
        ExpressionAttributeValues={":pk": f"TARGET#{thing_group}", ":run": "RUN#"},
        ScanIndexForward=False,
        Limit=limit,
    )
    seen: list[str] = []
    for item in out.get("Items", []):
        arn = item.get("package_arn")
        if item.get("outcome") in DEPLOYED_OUTCOMES and arn and arn not in seen:
            seen.append(arn)
    return seen


def previous_package(sm: Any, table: Any, thing_group: str, group: str, rejected: str) -> str | None:
    """What to go back to when ``rejected`` is rejected: the newest package that ran on the thing group before
    and is still Approved; else the newest Approved package of the group."""
    for arn in deployed_history(table, thing_group):
        if arn == rejected:
            continue
        try:
            status = sm.describe_model_package(ModelPackageName=arn).get("ModelApprovalStatus")
        except Exception:  # noqa: BLE001, S112 - a deleted package is simply not a candidate
            continue
        if status == "Approved":
            return arn
    for summary in approved_packages(sm, group):
        if summary["ModelPackageArn"] != rejected:
            return summary["ModelPackageArn"]
    return None


def subject(summary: dict[str, Any]) -> str:
    version = summary.get("model_version") or "-"
    return f"Loupe edge deployment of model {version}: {summary['outcome']}"[:99]


def message(summary: dict[str, Any]) -> str:
    lines = [
        f"Outcome: {summary['outcome']}" + (f" - {summary['reason']}" if summary.get("reason") else ""),
        f"Mode: {summary.get('mode')}",
        f"Package: {summary.get('package_arn') or '-'} (model version {summary.get('model_version') or '-'})",
        f"Thing group: {summary.get('thing_group')}",
        f"Deployment: {summary.get('deployment_id') or '-'}",
        f"Components: {json.dumps(summary.get('components') or {})}",
    ]
    if summary.get("kept"):
        lines.append(f"Other components kept in the deployment: {', '.join(summary['kept'])}")
    spool = summary.get("spooler") or {}
    if spool.get("storage") == "Disk":
        lines.append(
            f"Offline results: spooled on disk by the nucleus ({gg_mod.DISK_SPOOLER} {spool.get('disk_spooler')}"
            f" on {gg_mod.NUCLEUS} {spool.get('nucleus')})" + (f"; {spool['reason']}" if spool.get("reason") else "")
        )
    elif spool:
        lines.append(f"WARNING offline results: in memory only - {spool.get('reason')}")
    for thing, d in sorted((summary.get("devices") or {}).items()):
        lines.append(f"  {thing}: {d['status']}" + (f" - {d['reason']}" if d.get("reason") else ""))
    hidden = int(summary.get("devices_total") or 0) - len(summary.get("devices") or {})
    if hidden > 0:
        lines.append(f"  ... and {hidden} more devices: DEPLOYMENT#{summary.get('deployment_id')} in the table")
    return "\n".join(lines)


def overall(outcomes: dict[str, Any]) -> tuple[str, str]:
    counts = outcomes.get("counts") or {}
    total = sum(counts.values())
    done = counts.get("COMPLETED", 0)
    if total and done == total:
        return "COMPLETED", f"all {total} devices run the new components"
    parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    if counts.get("NOT_SERVING"):
        return "DEPLOYED_NOT_SERVING", f"deployed, not serving: {parts}"
    return ("PARTIAL" if done else "FAILED"), parts


def _ddb(value: Any) -> Any:
    """DynamoDB-safe copy (floats → str, empty strings kept)."""
    if isinstance(value, dict):
        return {k: _ddb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ddb(v) for v in value]
    if isinstance(value, float):
        return str(value)
    return value


# ------------------------------------------------------------------ package events → workflow runs
def run_name(kind: str, package_version: Any, key: str) -> str:
    """Execution name: unique per (package, status change), so a redelivered event starts nothing new."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{kind}-v{package_version}-{digest}"[:80]


def on_package_event(
    detail: dict[str, Any],
    sm: Any,
    sfn: Any,
    table: Any,
    state_machine_arn: str,
    thing_group: str,
    group_name: str,
) -> dict[str, Any]:
    """Approved → deploy this package; Rejected (the deployed one) → redeploy the previous Approved package.

    Returns what was decided: ``started`` (with the execution), ``duplicate`` or ``ignored`` (with why)."""
    arn = detail.get("ModelPackageArn") or ""
    status = detail.get("ModelApprovalStatus") or ""
    group = detail.get("ModelPackageGroupName") or ""
    if not arn or not status:
        raise PackageInvalid("event detail has no ModelPackageArn / ModelApprovalStatus")
    if group_name and group != group_name:
        return {"action": "ignored", "reason": f"package group {group} is not {group_name}"}
    version = detail.get("ModelPackageVersion") or arn.rsplit("/", 1)[-1]
    changed = str(detail.get("LastModifiedTime") or detail.get("CreationTime") or "")
    if status == "Approved":
        request = {"package_arn": arn, "mode": "approved"}
        name = run_name("deploy", version, f"{arn}|Approved|{changed}")
    elif status == "Rejected":
        targets = [current_target(table, thing_group, which) or {} for which in ("CURRENT", "PENDING")]
        if arn not in {t.get("package_arn") for t in targets}:
            return {"action": "ignored", "reason": f"package {version} is not what {thing_group} runs; nothing to undo"}
        previous = previous_package(sm, table, thing_group, group, arn)
        name = run_name("rollback", version, f"{arn}|Rejected|{changed}")
        if previous:
            request = {"package_arn": previous, "mode": "rollback", "rejected": arn}
        else:
            request = {
                "package_arn": None,
                "mode": "rollback",
                "rejected": arn,
                "reason": f"package {version} was rejected and no other package is Approved",
            }
    else:
        return {"action": "ignored", "reason": f"status {status} needs no deployment"}
    try:
        out = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(request))
    except sfn.exceptions.ExecutionAlreadyExists:
        return {"action": "duplicate", "execution_name": name, "reason": "this status change was already handled"}
    return {"action": "started", "execution_arn": out["executionArn"], "execution_name": name, "request": request}


def error_message(cause: Any) -> str:
    """The message of a Lambda error as the state machine hands it over (a JSON string in ``Cause``)."""
    if isinstance(cause, str):
        try:
            doc = json.loads(cause)
        except ValueError:
            return cause[:1000]
        if isinstance(doc, dict):
            return str(doc.get("errorMessage") or doc)[:1000]
    return str(cause or "")[:1000]
