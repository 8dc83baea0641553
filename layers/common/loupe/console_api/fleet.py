"""The console's Fleet page (``GET /fleet``): the devices, their deployments and the uncertain frames they sent.

Everything is read from what a deployed stack has, through the clients and stores given (never an MQTT
subscription: a Lambda function cannot hold one):

- the fleet's thing group (IoT ``ListThingsInThingGroup``) and its Greengrass core devices (``ListCoreDevices``
  filtered by the group, with each device's status and last status update), and the version of ``com.loupe.model``
  each has installed (``ListInstalledComponents``, for the first :data:`MAX_DEVICES_DETAILED` devices);
- what each device reports serving and when it last said so: its ``DEVICE#<thing>`` / ``SERVING`` item in the
  deployments table, written by ``functions/edge_health`` from every health message;
- the group's deployment runs (the deployments table's ``TARGET#<group>`` history: package, deployment id, outcome
  per device). Greengrass's own ``ListDeployments`` is not read: its grant needs ``iot:DescribeJob``,
  ``iot:DescribeThingGroup`` and ``iot:GetThingShadow`` as dependent actions (Service Authorization Reference, AWS
  IoT Greengrass V2), for nothing the table does not already say;
- the uncertain frames each device uploaded: the device writes them under ``raw/feedback/<thing>/`` in the raw
  bucket (the only prefix its role may write, see ``EdgeTokenExchangeRole`` in template.yaml) with its user metadata
  (model version, top confidence, reason, and the boxes it found, ``loupe_edge.app``) and announces them on MQTT;
  the IoT rule hands the announcement to ``functions/feedback``, which records the frame in the ledger. The newest
  few per device are returned with a short-lived presigned GET ``image_url`` and their boxes.

What a device wrote is untrusted: its metadata is parsed leniently into bounded, finite numbers (a malformed value
becomes ``boxes: []`` and a ``note``), only keys of image files under that device's own prefix are presigned.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from loupe.deployment.store import DeploymentsStore

FEEDBACK_PREFIX = "raw/feedback"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
THING = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
# per detailed device one ListInstalledComponents, one ListObjectsV2 and a HeadObject per frame: the answer stays
# well within the function's 29 s (API Gateway's integration limit is 30 s)
MAX_DEVICES_DETAILED = 20
FRAMES_PER_DEVICE = 4
MAX_BOXES = 50
IMAGE_URL_SECONDS = 300
MODEL_COMPONENT = "com.loupe.model"
RUN_FIELDS = ("run_id", "outcome", "reason", "mode", "model_version", "package_arn", "deployment_id", "devices")


def _plain(value: Any) -> Any:
    from loupe.ledger import plain

    return plain(value)


def _iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value or "")


def group_things(iot: Any, thing_group: str) -> list[str]:
    """The names of the things in the fleet's thing group, sorted."""
    names: list[str] = []
    for page in iot.get_paginator("list_things_in_thing_group").paginate(thingGroupName=thing_group):
        names += [str(n) for n in page.get("things", [])]
    return sorted(set(names))


def core_devices(greengrass: Any, thing_group_arn: str) -> dict[str, dict[str, Any]]:
    """The group's Greengrass core devices by thing name: status and last status update."""
    out: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"thingGroupArn": thing_group_arn}
    while True:
        page = greengrass.list_core_devices(**kwargs)
        for core in page.get("coreDevices", []):
            out[str(core["coreDeviceThingName"])] = {
                "status": str(core.get("status", "")),
                "last_update": _iso(core.get("lastStatusUpdateTimestamp")),
            }
        if not page.get("nextToken"):
            return out
        kwargs["nextToken"] = page["nextToken"]


def installed_model(greengrass: Any, thing: str) -> str:
    """The version of ``com.loupe.model`` the core device has installed, or ""."""
    kwargs: dict[str, Any] = {"coreDeviceThingName": thing}
    while True:
        page = greengrass.list_installed_components(**kwargs)
        for component in page.get("installedComponents", []):
            if component.get("componentName") == MODEL_COMPONENT:
                return str(component.get("componentVersion", ""))
        if not page.get("nextToken"):
            return ""
        kwargs["nextToken"] = page["nextToken"]


def group_arn(iot: Any, thing_group: str) -> str:
    return str(iot.describe_thing_group(thingGroupName=thing_group)["thingGroupArn"])


def devices(
    iot: Any,
    greengrass: Any,
    store: DeploymentsStore | None,
    thing_group: str,
    thing_group_arn: str,
    *,
    detailed: int = MAX_DEVICES_DETAILED,
) -> list[dict[str, Any]]:
    """The group's things with their Greengrass status, installed model component, the model version they last
    reported serving and when (their health record)."""
    things = group_things(iot, thing_group)
    cores = core_devices(greengrass, thing_group_arn)
    serving = store.serving_records(things) if store is not None and things else {}
    out = []
    for n, thing in enumerate(things):
        core = cores.get(thing)
        record = serving.get(thing) or {}
        out.append(
            {
                "thing": thing,
                "core_device": core is not None,
                "status": (core or {}).get("status", "NOT_A_CORE_DEVICE"),
                "last_update": (core or {}).get("last_update", ""),
                "model_component": installed_model(greengrass, thing) if core and n < detailed else "",
                "serving": record.get("model_version", ""),
                "health_updated": record.get("updated", ""),
            }
        )
    return out


def deployment_runs(store: DeploymentsStore | None, thing_group: str, limit: int = 20) -> list[dict[str, Any]]:
    """The group's deployment runs, newest first: package, model version, outcome and each device's outcome."""
    if store is None:
        return []
    runs = []
    for item in store.run_history(thing_group, limit):
        finished = str(item.get("sk", "")).removeprefix("RUN#").rsplit("#", 1)[0]
        runs.append({**{k: _plain(item.get(k)) for k in RUN_FIELDS}, "finished": finished})
    return runs


def _finite(value: Any, low: float, high: float) -> float:
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{value!r} is not a number in [{low}, {high}]")
    return number


def parse_boxes(raw: str | None) -> tuple[list[dict[str, Any]], str]:
    """The boxes a device put in its frame's metadata (``boxes``: ``[[class_id, confidence, x1, y1, x2, y2], ...]``,
    pixels of the frame) as ``[{"class_id", "confidence", "xyxy"}]``, and a note when they cannot be read."""
    if not raw:
        return [], "the device sent no boxes with this frame"
    try:
        rows = json.loads(raw)
        if not isinstance(rows, list):
            raise ValueError("not a list")
        boxes = []
        for row in rows[:MAX_BOXES]:
            if not isinstance(row, list) or len(row) != 6:
                raise ValueError(f"box {row!r} is not [class_id, confidence, x1, y1, x2, y2]")
            class_id = int(_finite(row[0], 0, 1000))
            confidence = _finite(row[1], 0.0, 1.0)
            x1, y1, x2, y2 = (_finite(v, 0.0, 100_000.0) for v in row[2:])
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"box {row!r} is empty")
            boxes.append({"class_id": class_id, "confidence": confidence, "xyxy": [x1, y1, x2, y2]})
    except (TypeError, ValueError) as exc:
        return [], f"the boxes the device sent cannot be read: {str(exc)[:200]}"
    return boxes, ""


def device_frames(s3: Any, raw_bucket: str, thing: str, per_device: int = FRAMES_PER_DEVICE) -> list[dict[str, Any]]:
    """The newest uncertain frames ``thing`` uploaded (one listing page of its prefix), newest first."""
    if not THING.match(thing):
        return []
    prefix = f"{FEEDBACK_PREFIX}/{thing}/"
    listed = s3.list_objects_v2(Bucket=raw_bucket, Prefix=prefix, MaxKeys=1000)
    images = [
        o
        for o in listed.get("Contents", [])
        if str(o["Key"]).lower().endswith(IMAGE_SUFFIXES) and "/" not in str(o["Key"])[len(prefix) :]
    ]
    images.sort(key=lambda o: o["LastModified"], reverse=True)
    frames = []
    for obj in images[:per_device]:
        key = str(obj["Key"])
        meta = {k.lower(): v for k, v in (s3.head_object(Bucket=raw_bucket, Key=key).get("Metadata") or {}).items()}
        boxes, note = parse_boxes(meta.get("boxes"))
        frames.append(
            {
                "thing": thing,
                "frame_id": key[len(prefix) :].rsplit(".", 1)[0],
                "key": key,
                "uploaded": _iso(obj["LastModified"]),
                "model_version": str(meta.get("model-version", ""))[:128],
                "max_confidence": str(meta.get("max-confidence", ""))[:16],
                "reason": str(meta.get("reason", ""))[:256],
                "boxes": boxes,
                **({"note": note} if note else {}),
                "image_url": s3.generate_presigned_url(
                    "get_object", Params={"Bucket": raw_bucket, "Key": key}, ExpiresIn=IMAGE_URL_SECONDS
                ),
            }
        )
    return frames


def recent_frames(
    s3: Any, raw_bucket: str, things: Iterable[str], *, detailed: int = MAX_DEVICES_DETAILED
) -> dict[str, list[dict[str, Any]]]:
    """Each device's newest uploaded frames (the first ``detailed`` devices)."""
    return {thing: device_frames(s3, raw_bucket, thing) for thing in list(things)[:detailed]}


CANARY_FIELDS = ("status", "challenger_version", "champion_version", "cohort", "started", "ended", "hold")


def running_canary(store: DeploymentsStore | None, thing_group: str) -> dict[str, Any] | None:
    """The group's running canary (``TARGET#<group>`` / ``CANARY``): versions, cohort and, when it is held for
    labels, the hold (why, each model's labeled precision, until when); None when none runs. A person's verdict is
    given with ``loupe canary``, not here."""
    item = store.canary(thing_group) if store is not None else None
    if not item or item.get("status") != "RUNNING":
        return None
    return {k: _plain(item[k]) for k in CANARY_FIELDS if k in item}


def fleet_view(
    iot: Any, greengrass: Any, s3: Any, store: DeploymentsStore | None, thing_group: str, raw_bucket: str
) -> dict[str, Any]:
    """What ``GET /fleet`` answers: devices, the running canary, deployment runs and recent frames."""
    arn = group_arn(iot, thing_group)
    listed = devices(iot, greengrass, store, thing_group, arn)
    return {
        "thing_group": thing_group,
        "devices": listed,
        "canary": running_canary(store, thing_group),
        "deployments": deployment_runs(store, thing_group),
        "frames": recent_frames(s3, raw_bucket, [d["thing"] for d in listed]),
    }
