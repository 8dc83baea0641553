"""Revising a thing group's deployment: Greengrass keeps one deployment per target, so each new one is the current
one with Loupe's components changed and everything else kept, plus the nucleus settings results need (the disk
spooler for offline results, ``interpolateComponentConfiguration`` for the inference component's IPC policies).

Takes its ``greengrassv2`` client as an argument; the component building blocks are :mod:`loupe.greengrass`.
"""

from __future__ import annotations

import json
from typing import Any

from loupe.aws_clients import GreengrassV2
from loupe.greengrass import (
    COMPONENT_PREFIX,
    NUCLEUS,
    SEMVER,
    GreengrassError,
    component_spec,
    get_recipe,
    nucleus_requirement,
    paged,
    parse_version,
    public_component_arn,
    sort_versions,
    version_satisfies,
)


# ------------------------------------------------------------------ revising a target's deployment
def latest_deployment(gg: GreengrassV2, target_arn: str) -> dict[str, Any] | None:
    """GetDeployment of the target's current deployment (ListDeployments ``historyFilter=LATEST_ONLY``), or None.

    Greengrass keeps one deployment per target: a new CreateDeployment to the same target *replaces* it and the
    core devices remove every component the new one lacks ("Revise deployments" in the Greengrass v2 developer
    guide). So a deployment is always built from the current one."""
    latest = None
    for summary in paged(gg, "list_deployments", "deployments", targetArn=target_arn, historyFilter="LATEST_ONLY"):
        if summary.get("targetArn") not in (None, target_arn) or summary.get("isLatestForTarget") is False:
            continue
        if latest is None or str(summary.get("creationTimestamp")) > str(latest.get("creationTimestamp")):
            latest = summary
    if latest is None:
        return None
    return gg.get_deployment(deploymentId=latest["deploymentId"])


def revise_components(current: dict[str, Any] | None, ours: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The target's components with ``ours`` (Loupe's) changed and every other component kept as it is, with its
    version, ``configurationUpdate`` and ``runWith``. Loupe components no longer in ``ours`` are dropped."""
    kept = {
        name: component_spec(spec)
        for name, spec in ((current or {}).get("components") or {}).items()
        if not name.startswith(COMPONENT_PREFIX)
    }
    return {**kept, **{name: component_spec(spec) for name, spec in ours.items()}}


# ------------------------------------------------------------------ the nucleus' MQTT spooler
DISK_SPOOLER = "aws.greengrass.DiskSpooler"
DISK_SPOOLER_MIN_NUCLEUS = (2, 11, 0)  # Greengrass developer guide, "Disk spooler" (storageType Disk needs 2.11.0)
# Greengrass developer guide, "Greengrass nucleus" configuration, mqtt.spooler (and "Disk spooler", Usage)
DISK_SPOOLING = {"mqtt": {"spooler": {"storageType": "Disk", "pluginName": DISK_SPOOLER}}}


def disk_spooler_version(gg: GreengrassV2, region: str, nucleus_version: str) -> str | None:
    """The newest public ``aws.greengrass.DiskSpooler`` version whose (hard) nucleus dependency accepts
    ``nucleus_version``, or None. Each DiskSpooler version names the nucleus versions it runs in."""
    arn = public_component_arn(region, DISK_SPOOLER)
    versions = sort_versions(
        v["componentVersion"] for v in paged(gg, "list_component_versions", "componentVersions", arn=arn)
    )
    for version in versions:
        recipe = get_recipe(gg, public_component_arn(region, DISK_SPOOLER, version))
        if version_satisfies(nucleus_version, nucleus_requirement(recipe)):
            return version
    return None


def merge_configuration(update: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    """A ``configurationUpdate`` with ``extra`` deep-merged into its ``merge`` document (``reset`` kept)."""
    out = dict(update or {})
    merged = out.get("merge") or "{}"
    try:
        doc = json.loads(merged) if isinstance(merged, str) else dict(merged)
    except ValueError as exc:
        raise GreengrassError(f"{NUCLEUS} configurationUpdate.merge is not JSON: {exc}") from exc

    def deep(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        res = dict(a)
        for k, v in b.items():
            res[k] = deep(res[k], v) if isinstance(res.get(k), dict) and isinstance(v, dict) else v
        return res

    out["merge"] = json.dumps(deep(doc if isinstance(doc, dict) else {}, extra), separators=(",", ":"))
    return out


def plan_disk_spooling(
    gg: GreengrassV2, region: str, components: dict[str, dict[str, Any]], nucleus_version: str = ""
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Turn on the nucleus' disk spooler in a (revised) deployment, without ever choosing a nucleus version.

    By default the nucleus spools MQTT messages for IoT Core in memory: a result accepted by PublishToIoTCore
    while the device is offline is lost when the nucleus restarts. Disk spooling needs ``aws.greengrass.Nucleus``
    in the deployment (to carry the ``mqtt.spooler`` configuration) and ``aws.greengrass.DiskSpooler``. A
    deployment that names another nucleus version than the device runs *updates* the nucleus, so the version is
    the one the target's current deployment already names, or ``nucleus_version`` (the operator's parameter).
    Returns the components and ``{"storage": "Disk" | "Memory", "nucleus", "disk_spooler", "reason"}``."""
    out = {name: dict(spec) for name, spec in components.items()}
    current = (out.get(NUCLEUS) or {}).get("componentVersion") or ""
    version = nucleus_version or current
    if not version:
        return out, {
            "storage": "Memory",
            "nucleus": "",
            "disk_spooler": "",
            "reason": f"the deployment names no {NUCLEUS} version and the NucleusVersion parameter is empty: results "
            "accepted by the nucleus while a device is offline are kept in memory only and lost if it restarts",
        }
    if parse_version(version) < DISK_SPOOLER_MIN_NUCLEUS:
        return out, {
            "storage": "Memory",
            "nucleus": version,
            "disk_spooler": "",
            "reason": f"{NUCLEUS} {version} is older than 2.11.0, which disk spooling needs: results accepted by "
            "the nucleus while a device is offline are kept in memory only",
        }
    spooler = (out.get(DISK_SPOOLER) or {}).get("componentVersion") or ""
    if spooler:
        recipe = get_recipe(gg, public_component_arn(region, DISK_SPOOLER, spooler))
        if not version_satisfies(version, nucleus_requirement(recipe)):
            spooler = ""  # the kept version does not run in this nucleus; pick one that does
    spooler = spooler or disk_spooler_version(gg, region, version) or ""
    if not spooler:
        return out, {
            "storage": "Memory",
            "nucleus": version,
            "disk_spooler": "",
            "reason": f"no {DISK_SPOOLER} version runs in {NUCLEUS} {version}: results accepted by the nucleus "
            "while a device is offline are kept in memory only",
        }
    nucleus_spec = dict(out.get(NUCLEUS) or {})
    nucleus_spec["componentVersion"] = version
    nucleus_spec["configurationUpdate"] = merge_configuration(nucleus_spec.get("configurationUpdate"), DISK_SPOOLING)
    out[NUCLEUS] = nucleus_spec
    out[DISK_SPOOLER] = {**(out.get(DISK_SPOOLER) or {}), "componentVersion": spooler}
    reason = "" if version == current else f"{NUCLEUS} {version} from the NucleusVersion parameter"
    if current and version != current:
        reason += f" (the devices ran {current}: they update their nucleus)"
    return out, {"storage": "Disk", "nucleus": version, "disk_spooler": spooler, "reason": reason}


# ------------------------------------------------------------------ IPC authorization policies with {iot:thingName}
# com.loupe.inference's accessControl names loupe/{iot:thingName}/...: the nucleus replaces the variable in a
# component's configuration (its policies included) only from 2.6.0 on and only with this setting, default false
# (developer guide, "Greengrass nucleus" > configuration interpolateComponentConfiguration; "Use the IPC service" >
# authorization policies). Without it every PublishToIoTCore of the component is an UnauthorizedError.
IPC_INTERPOLATION = {"interpolateComponentConfiguration": True}
IPC_INTERPOLATION_MIN_NUCLEUS = (2, 6, 0)
FLEET_VERSION_LOOKUPS = 200  # GetCoreDevice calls at most: a larger fleet names its version (NucleusVersion)


def fleet_nucleus_version(gg: GreengrassV2, target_arn: str, limit: int = FLEET_VERSION_LOOKUPS) -> str:
    """The nucleus version every core device of the thing group reports (GetCoreDevice ``coreVersion``), or ""
    when they differ, one reports none, the group has none or more than ``limit`` devices. Naming a nucleus
    version in a deployment updates every device that runs another one, so only one all of them run is used."""
    versions: set[str] = set()
    for count, summary in enumerate(paged(gg, "list_core_devices", "coreDevices", thingGroupArn=target_arn)):
        if count >= limit:
            return ""
        version = str(gg.get_core_device(coreDeviceThingName=summary["coreDeviceThingName"]).get("coreVersion") or "")
        if not SEMVER.match(version):
            return ""
        versions.add(version)
    return versions.pop() if len(versions) == 1 else ""


def plan_ipc_interpolation(
    gg: GreengrassV2, target_arn: str, components: dict[str, dict[str, Any]], nucleus_version: str = ""
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Add ``aws.greengrass.Nucleus`` with ``interpolateComponentConfiguration: true`` merged into its
    configuration, at ``nucleus_version`` (the operator's parameter), else the version the deployment already
    names, else the one every device of the group reports (the order :func:`plan_disk_spooling` follows).
    Returns the components and ``{"interpolation": bool, "nucleus", "reason"}``; with no version known nothing
    is added and the reason says what to set. A nucleus older than 2.6.0 cannot interpolate: GreengrassError."""
    out = {name: dict(spec) for name, spec in components.items()}
    version = nucleus_version or (out.get(NUCLEUS) or {}).get("componentVersion") or ""
    if not version:
        version = fleet_nucleus_version(gg, target_arn)
    if not version:
        return out, {
            "interpolation": False,
            "nucleus": "",
            "reason": f"no {NUCLEUS} version known (NucleusVersion parameter empty, none in the current deployment, "
            "the devices report none or different ones): the devices must already have "
            "interpolateComponentConfiguration true, else com.loupe.inference cannot publish",
        }
    if parse_version(version) < IPC_INTERPOLATION_MIN_NUCLEUS:
        raise GreengrassError(
            f"{NUCLEUS} {version} cannot interpolate {{iot:thingName}} in IPC authorization policies (2.6.0 or "
            f"later): com.loupe.inference could not publish its results; set NucleusVersion to 2.6.0 or later"
        )
    spec = dict(out.get(NUCLEUS) or {})
    spec["componentVersion"] = version
    spec["configurationUpdate"] = merge_configuration(spec.get("configurationUpdate"), IPC_INTERPOLATION)
    out[NUCLEUS] = spec
    return out, {"interpolation": True, "nucleus": version, "reason": ""}
