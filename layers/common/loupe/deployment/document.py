"""The deployment document: a revision of the thing group's current Greengrass deployment in which only Loupe's
components change, with the rollout, abort and timeout policies of template.yaml's parameters."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from loupe import greengrass as gg_mod
from loupe.aws_clients import GreengrassV2, IoT
from loupe.deployment import revision
from loupe.deployment.errors import ComponentMissing, DeploymentError
from loupe.deployment.packages import Package
from loupe.settings import Settings


def poll_interval(timeout_seconds: int) -> int:
    """Seconds between status checks: about 20 checks per timeout, between 1 s and 60 s."""
    return int(min(60, max(1, timeout_seconds // 20)))


# a deployment's first status check: healthy devices take a new deployment in seconds, so the workflow looks soon
# and then less and less often (next_check) — not a whole poll_interval (30 s for a 600 s timeout) after each start
FIRST_CHECK_SECONDS = 2


def first_check(timeout_seconds: int) -> int:
    """Seconds from a deployment's start to its first status check."""
    return min(FIRST_CHECK_SECONDS, poll_interval(timeout_seconds))


def next_check(deployment: dict[str, Any], now: float) -> int:
    """Seconds to a deployment's next status check: a quarter of the time waited so far, at least
    ``FIRST_CHECK_SECONDS``, at most ``poll_interval`` of its timeout (about 20 checks per timeout once it drags on:
    Step Functions bills each state transition, and each check is a Lambda invocation)."""
    started, deadline = float(deployment["started"]), float(deployment["deadline"])
    cap = poll_interval(int(deadline - started))
    return int(min(cap, max(FIRST_CHECK_SECONDS, (now - started) // 4)))


# com.loupe.inference's IPC authorization policies, in its configuration
ACCESS_CONTROL_PATH = "/accessControl"
# the feedback settings a model's uncertainty band sets (loupe.uncertainty), as configurationUpdate reset pointers
BAND_PATHS = ["/settings/feedback/bandLow", "/settings/feedback/bandHigh", "/settings/feedback/criterion"]
# the inference component's shadow block (loupe_edge.shadow): a candidate beside production
SHADOW_PATH = "/settings/shadow"
DEFAULT_EVERY_NTH_FRAME = 5


def shadow_settings(values: dict[str, str], every_nth_frame: int = DEFAULT_EVERY_NTH_FRAME) -> dict[str, Any]:
    """``settings.shadow`` of ``com.loupe.inference`` for a candidate whose ``com.loupe.shadow`` recipe carries
    ``values`` (its checked configuration: version, package ARN, digests): the device loads the candidate only when
    its pointer names this version and its files have these digests."""
    if not 1 <= int(every_nth_frame) <= 1_000_000:
        raise DeploymentError(f"everyNthFrame must be 1 or more, got {every_nth_frame}")
    return {
        "enabled": True,
        "modelVersion": values["modelVersion"],
        "modelPackageArn": values["modelPackageArn"],
        "sha256": {"model.onnx": values["modelSha256"], "model_int8.onnx": values.get("modelInt8Sha256", "")},
        "everyNthFrame": int(every_nth_frame),
    }


def inference_configuration(
    settings: Settings, band: dict[str, Any] | None, shadow: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``com.loupe.inference``'s configurationUpdate for one model: where uncertain frames go (the raw bucket) and
    the model's own uncertainty band from its model card. A model without one gets the recipe's default band back
    (``reset``): Greengrass keeps merged configuration across deployments, so the previous model's band would stay.
    ``/accessControl`` is always reset: a device keeps a component's configuration when a new version comes, so a
    new version's IPC policy (its DefaultConfiguration) would never reach a device that ran an older one.
    ``/settings/shadow`` is always reset too, then set from ``shadow`` (:func:`shadow_settings`) when the deployment
    carries a candidate: a deployment without one ends any shadow an earlier deployment started.
    """
    feedback: dict[str, Any] = {}
    if settings.raw_bucket:
        feedback["bucket"] = settings.raw_bucket
    update: dict[str, Any] = {"reset": [ACCESS_CONTROL_PATH, SHADOW_PATH]}
    if band:
        feedback.update({k: band[k] for k in ("bandLow", "bandHigh", "criterion") if k in band})
    else:
        update["reset"] += list(BAND_PATHS)
    merge: dict[str, Any] = {}
    if feedback:
        merge["feedback"] = feedback
    if shadow:
        merge["shadow"] = shadow
    if merge:
        update["merge"] = json.dumps({"settings": merge})
    return update


def model_configuration_update(values: dict[str, str]) -> dict[str, Any]:
    """``com.loupe.model``'s configurationUpdate: every per-model value (version, package, digests) merged over a
    reset of the whole configuration. A core device keeps a component's configuration when a deployment brings a
    new version with other defaults (developer guide, "Update component configurations"; "Troubleshooting"), so
    without it model N+1's install check would run against model N's digests and roll back."""
    return {"reset": [""], "merge": json.dumps(values, separators=(",", ":"), sort_keys=True)}


def deployment_document(
    target_arn: str,
    name: str,
    model: dict[str, Any],
    inference: dict[str, Any],
    settings: Settings,
    timeout_seconds: int,
    model_values: dict[str, str] | None = None,
    shadow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``shadow``: a candidate beside production, ``{"name": "com.loupe.shadow", "version", "values": its checked
    configuration, "every_nth_frame"}``; the document then carries its component and the inference's shadow block."""
    model_entry: dict[str, Any] = {"componentVersion": model["version"]}
    if model_values is not None:
        model_entry["configurationUpdate"] = model_configuration_update(model_values)
    block = None
    if shadow is not None:
        block = shadow_settings(shadow["values"], shadow.get("every_nth_frame", DEFAULT_EVERY_NTH_FRAME))
    inference_entry: dict[str, Any] = {
        "componentVersion": inference["version"],
        "configurationUpdate": inference_configuration(settings, model.get("feedback_band"), block),
    }
    components = {model["name"]: model_entry, inference["name"]: inference_entry}
    if shadow is not None:
        components[shadow["name"]] = {
            "componentVersion": shadow["version"],
            "configurationUpdate": model_configuration_update(shadow["values"]),
        }
    return {
        "targetArn": target_arn,
        "deploymentName": name[:256],
        "components": components,
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


def _model_values(gg: GreengrassV2, model: dict[str, Any]) -> dict[str, str]:
    arn = model.get("arn") or gg_mod.component_arn(gg, model["name"], model["version"])
    if arn is None:
        raise ComponentMissing(f"{model['name']} {model['version']} is not published")
    try:
        return gg_mod.model_configuration(gg, arn)
    except gg_mod.GreengrassError as exc:
        raise DeploymentError(str(exc)) from exc


def _shadow_plan(gg: GreengrassV2, shadow: dict[str, Any] | None) -> dict[str, Any] | None:
    """The request's candidate (``{"model": <published com.loupe.shadow>, "every_nth_frame"}``) with its recipe's
    configuration, checked against ``loupe.recipe_values`` again."""
    if not shadow:
        return None
    model = shadow["model"]
    if model.get("name") != gg_mod.SHADOW_COMPONENT:
        raise DeploymentError(f"a shadow candidate must be {gg_mod.SHADOW_COMPONENT}, got {model.get('name')}")
    return {
        "name": model["name"],
        "version": model["version"],
        "values": _model_values(gg, model),
        "every_nth_frame": int(shadow.get("every_nth_frame", DEFAULT_EVERY_NTH_FRAME)),
    }


def start_deployment(
    gg: GreengrassV2,
    iot: IoT,
    request: dict[str, Any],
    settings: Settings,
    timeout_seconds: int,
    now: float | None = None,
    thing_group: str | None = None,
) -> dict[str, Any]:
    """CreateDeployment to the thing group (idempotent per workflow run through ``clientToken``).

    ``thing_group``: another target than the fleet's group (a canary cohort, :mod:`loupe.deployment.canary`); its
    deployment is still a revision of the *fleet's* current deployment, whose devices its members were."""
    if not settings.thing_group_name:
        raise DeploymentError("missing configuration: THING_GROUP_NAME")
    fleet = iot.describe_thing_group(thingGroupName=settings.thing_group_name)
    group = fleet if not thing_group else iot.describe_thing_group(thingGroupName=thing_group)
    package = Package(**request["package"])
    run = request.get("run_id") or f"v{package.version}"
    doc = deployment_document(
        group["thingGroupArn"],
        f"loupe model {package.model_version} ({request.get('mode', 'approved')})",
        request["model"],
        request["inference"],
        settings,
        timeout_seconds,
        model_values=_model_values(gg, request["model"]),
        shadow=_shadow_plan(gg, request.get("shadow")),
    )
    # Revise, never replace: the new deployment replaces the target's current one on every device, so it
    # carries every component of the current one; only Loupe's components (and their configuration) change.
    current = revision.latest_deployment(gg, fleet["thingGroupArn"])
    doc["components"] = revision.revise_components(current, doc["components"])
    # Results the component handed to the nucleus (PublishToIoTCore) wait in the nucleus' spooler while the
    # device is offline: on disk only with aws.greengrass.DiskSpooler and the nucleus' mqtt.spooler setting.
    doc["components"], spooler = revision.plan_disk_spooling(
        gg, group["thingGroupArn"].split(":")[3], doc["components"], settings.nucleus_component_version
    )
    # The inference component's IPC policy names loupe/{iot:thingName}/...: the nucleus must interpolate it.
    try:
        doc["components"], ipc = revision.plan_ipc_interpolation(
            gg, group["thingGroupArn"], doc["components"], settings.nucleus_component_version
        )
    except gg_mod.GreengrassError as exc:
        raise DeploymentError(str(exc)) from exc
    key = f"{package.arn}|{run}" + (f"|{thing_group}" if thing_group else "")  # one run may deploy to two targets
    token = hashlib.sha256(key.encode()).hexdigest()[:64]
    out = gg.create_deployment(**doc, clientToken=token)
    started = time.time() if now is None else now
    timeout = max(1, int(timeout_seconds))
    return {
        "deployment_id": out["deploymentId"],
        "iot_job_id": out.get("iotJobId", ""),
        "revised": (current or {}).get("deploymentId", ""),
        "kept": sorted(n for n in doc["components"] if not n.startswith(gg_mod.COMPONENT_PREFIX)),
        "spooler": spooler,
        "ipc": ipc,
        "model_version": str((request.get("model") or {}).get("model_version") or package.model_version),
        "target_arn": group["thingGroupArn"],
        "started": started,
        "deadline": started + timeout,
        "poll_seconds": first_check(timeout),
    }
