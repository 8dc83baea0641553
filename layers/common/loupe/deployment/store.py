"""The deployments table (DynamoDB, keys ``pk``/``sk``): every read and write of it goes through
:class:`DeploymentsStore`.

Items:
- ``PACKAGE#<package arn>`` / ``RUN#<run id>``: a run's summary (package → deployment → per-device outcome).
- ``TARGET#<thing group>`` / ``RUN#<finished>#<run id>``: the same summary, per thing group (its history).
- ``TARGET#<thing group>`` / ``CURRENT``: the package the group runs (completed on at least one device).
- ``TARGET#<thing group>`` / ``PENDING``: the newest deployment started and not finished.
- ``TARGET#<thing group>`` / ``LOCK``: the rollout lock (one run at a time per group; it expires).
- ``TARGET#<thing group>`` / ``SHADOW``: the candidate the group runs beside production (shadow mode), written when
  its run takes the rollout lock to deploy it (and again with the deployment's id); removed when a deployment
  without a candidate completes, or when the shadow run itself deployed nothing.
- ``PACKAGE#<package arn>`` / ``SHADOW``: which model version a package ran as in shadow mode (the key of its
  ``SHADOW#`` counters), for the registry to show its field agreement.
- ``DEPLOYMENT#<deployment id>`` / ``DEVICE#<thing>``: one device's outcome of one deployment.
- ``DEVICE#<thing>`` / ``SERVING``: the model version the device last reported serving (its health messages).
- ``MODEL#<model version>`` / ``DEVICE#<thing>``: what the device reported while serving that model (frames,
  uncertain frames, NG frames, errors; summed over its health windows, each window once): a canary's evidence.
- ``TARGET#<thing group>`` / ``CANARY``: the canary running on the group (run, challenger, champion, cohort), and a
  person's verdict on it (``override``) when one was given by hand (``loupe canary promote|rollback``).
- ``SHADOW#<candidate version>`` / ``DEVICE#<thing>``: the agreement counters the device reported for a candidate
  run beside production (shadow mode), summed over its health windows; the candidate's field agreement is the sum
  over its devices (:meth:`DeploymentsStore.shadow_totals`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from loupe.aws_clients import DynamoDBTable
from loupe.aws_errors import is_conditional_check_failed

DEPLOYED_OUTCOMES = ("COMPLETED", "PARTIAL", "DEPLOYED_NOT_SERVING")  # the components reached some devices
BATCH_GET_KEYS = 100  # BatchGetItem's largest request
# the additive counters of a shadow window (loupe.edge_metrics.ShadowReport.counters)
SHADOW_COUNTERS = (
    "production_frames",
    "frames",
    "errors",
    "verdict_ok_ok",
    "verdict_ok_ng",
    "verdict_ng_ok",
    "verdict_ng_ng",
    "boxes_production",
    "boxes_shadow",
    "boxes_matched",
    "uncertain_production",
    "uncertain_shadow",
)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _target(thing_group: str, sk: str) -> dict[str, str]:
    return {"pk": f"TARGET#{thing_group}", "sk": sk}


def _serving_key(thing: str) -> dict[str, str]:
    return {"pk": f"DEVICE#{thing}", "sk": "SERVING"}


def _ddb(value: Any) -> Any:
    """DynamoDB-safe copy (floats → str, empty strings kept)."""
    if isinstance(value, dict):
        return {k: _ddb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ddb(v) for v in value]
    if isinstance(value, float):
        return str(value)
    return value


class DeploymentsStore:
    def __init__(self, table: DynamoDBTable) -> None:
        self.table = table

    @classmethod
    def from_name(cls, name: str, dynamodb: Any = None) -> DeploymentsStore:
        import boto3

        return cls((dynamodb or boto3.resource("dynamodb")).Table(name))

    # ------------------------------------------------------------------ the rollout lock
    def acquire_lock(self, thing_group: str, run_id: str, hold_seconds: int, now: float | None = None) -> bool:
        """Take the thing group's rollout lock (a conditional write): free, expired, or already ours."""
        now = time.time() if now is None else now
        try:
            self.table.put_item(
                Item={
                    **_target(thing_group, "LOCK"),
                    "owner": run_id,
                    "expires": int(now + hold_seconds),
                    "acquired": utc_now(),
                },
                ConditionExpression="attribute_not_exists(pk) OR #owner = :me OR #expires < :now",
                ExpressionAttributeNames={"#owner": "owner", "#expires": "expires"},
                ExpressionAttributeValues={":me": run_id, ":now": int(now)},
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    def release_lock(self, thing_group: str, run_id: str) -> None:
        """Give the lock back, if ``run_id`` still holds it."""
        self._delete_if(
            _target(thing_group, "LOCK"),
            ConditionExpression="#owner = :me",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":me": run_id},
        )

    def lock_holder(self, thing_group: str) -> str:
        item = self.table.get_item(Key=_target(thing_group, "LOCK"), ConsistentRead=True).get("Item") or {}
        return str(item.get("owner", ""))

    # ------------------------------------------------------------------ what the thing group runs
    def current_target(self, thing_group: str, which: str = "CURRENT") -> dict[str, Any] | None:
        """``CURRENT``: the package the group runs; ``PENDING``: the package of the newest deployment started."""
        item = self.table.get_item(Key=_target(thing_group, which), ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def mark_target(self, thing_group: str, package: Mapping[str, Any], deployment_id: str, run_id: str) -> None:
        """The package the thing group runs: written when a deployment completed on at least one device (a failed,
        rolled-back deployment leaves the previous one in place). A rejection of this package is undone."""
        self.table.put_item(
            Item={
                **_target(thing_group, "CURRENT"),
                "package_arn": package.get("arn", ""),
                "model_version": str(package.get("version", "")),
                "deployment_id": deployment_id,
                "run_id": run_id,
                "updated": utc_now(),
            }
        )

    def mark_pending(self, thing_group: str, package: Mapping[str, Any], deployment_id: str, run_id: str) -> None:
        """The deployment just created (a rejection while it is still rolling out must undo it too)."""
        self.table.put_item(
            Item={
                **_target(thing_group, "PENDING"),
                "package_arn": package.get("arn", ""),
                "deployment_id": deployment_id,
                "run_id": run_id,
                "updated": utc_now(),
            }
        )

    def clear_pending(self, thing_group: str, deployment_id: str) -> None:
        """The deployment has an outcome: it is no longer pending (unless a newer one replaced it already)."""
        self._delete_if(
            _target(thing_group, "PENDING"),
            ConditionExpression="deployment_id = :d",
            ExpressionAttributeValues={":d": deployment_id},
        )

    def deployed_history(self, thing_group: str, limit: int = 50) -> list[str]:
        """Package ARNs that completed on the thing group, newest first (each once)."""
        seen: list[str] = []
        for item in self.run_history(thing_group, limit):
            arn = item.get("package_arn")
            if item.get("outcome") in DEPLOYED_OUTCOMES and arn and arn not in seen:
                seen.append(arn)
        return seen

    # ------------------------------------------------------------------ runs and per-device outcomes
    def put_run(self, summary: Mapping[str, Any], finished: str) -> None:
        """A run's summary, under its package and in its thing group's history."""
        run_id = summary["run_id"]
        self.table.put_item(
            Item={"pk": f"PACKAGE#{summary.get('package_arn') or 'none'}", "sk": f"RUN#{run_id}", **_ddb(summary)}
        )
        self.table.put_item(Item={**_target(summary["thing_group"], f"RUN#{finished}#{run_id}"), **_ddb(dict(summary))})

    def put_device_outcome(self, deployment_id: str, thing: str, **fields: Any) -> None:
        self.table.put_item(Item={**self._device_key(deployment_id, thing), **fields})

    def put_device_outcomes(self, deployment_id: str, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Many devices' outcomes at once (BatchWriteItem, 25 a call)."""
        with self.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
            for thing, fields in rows:
                batch.put_item(Item={**self._device_key(deployment_id, thing), **fields})

    @staticmethod
    def _device_key(deployment_id: str, thing: str) -> dict[str, str]:
        return {"pk": f"DEPLOYMENT#{deployment_id}", "sk": f"DEVICE#{thing}"}

    # ------------------------------------------------------------------ what each device serves
    def record_serving(self, thing: str, model_version: str | None) -> bool:
        """Remember the model version ``thing`` reports serving; a message without one changes nothing."""
        if not thing or not model_version:
            return False
        self.table.put_item(Item={**_serving_key(thing), "model_version": str(model_version), "updated": utc_now()})
        return True

    def serving_version(self, thing: str) -> str | None:
        item = self.table.get_item(Key=_serving_key(thing), ConsistentRead=True).get("Item")
        return str(item["model_version"]) if item and item.get("model_version") else None

    def serving_versions(self, things: list[str]) -> dict[str, str]:
        """What each of ``things`` reports serving: BatchGetItem, 100 keys a call (unprocessed keys retried)."""
        return {thing: str(item["model_version"]) for thing, item in self.serving_records(things).items()}

    def serving_records(self, things: list[str]) -> dict[str, dict[str, Any]]:
        """Each of ``things``' last health record (``model_version``, ``updated``), for those that sent one."""
        client, name = self.table.meta.client, self.table.name  # a resource's client: plain Python values
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(things), BATCH_GET_KEYS):
            keys = [_serving_key(t) for t in things[start : start + BATCH_GET_KEYS]]
            request: dict[str, Any] = {name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                got = client.batch_get_item(RequestItems=request)
                for item in got.get("Responses", {}).get(name, []):
                    if item.get("model_version"):
                        thing = str(item["pk"]).removeprefix("DEVICE#")
                        out[thing] = {
                            "model_version": str(item["model_version"]),
                            "updated": str(item.get("updated", "")),
                        }
                request = got.get("UnprocessedKeys") or {}
        return out

    def run_history(self, thing_group: str, limit: int = 20) -> list[dict[str, Any]]:
        """The group's deployment runs, newest first (``TARGET#<group>`` / ``RUN#<finished>#<run id>``): one Query."""
        out = self.table.query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :run)",
            ExpressionAttributeValues={":pk": f"TARGET#{thing_group}", ":run": "RUN#"},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [dict(item) for item in out.get("Items", [])]

    # ------------------------------------------------------------------ the candidate beside production
    def mark_shadow(
        self, thing_group: str, candidate: Mapping[str, Any], model_version: str, deployment_id: str, run_id: str
    ) -> None:
        """``candidate`` (a package) now runs beside production on the group as model version ``model_version``."""
        fields = {
            "package_arn": candidate.get("arn", ""),
            "package_version": str(candidate.get("version", "")),
            "model_version": model_version,
            "thing_group": thing_group,
            "deployment_id": deployment_id,
            "run_id": run_id,
            "updated": utc_now(),
        }
        self.table.put_item(Item={**_target(thing_group, "SHADOW"), **fields})
        self.table.put_item(Item={"pk": f"PACKAGE#{fields['package_arn']}", "sk": "SHADOW", **fields})

    def shadow_target(self, thing_group: str) -> dict[str, Any] | None:
        """The candidate the group runs beside production, if any."""
        return self.current_target(thing_group, "SHADOW")

    def end_shadow(self, thing_group: str, deployment_id: str | None = None) -> None:
        """The group runs no candidate any more; with ``deployment_id``, only if that deployment started it."""
        if deployment_id is None:
            self.table.delete_item(Key=_target(thing_group, "SHADOW"))
            return
        self._delete_if(
            _target(thing_group, "SHADOW"),
            ConditionExpression="deployment_id = :d",
            ExpressionAttributeValues={":d": deployment_id},
        )

    def package_shadow(self, package_arn: str) -> dict[str, Any] | None:
        """How ``package_arn`` ran in shadow mode (its candidate model version), if it ever did."""
        item = self.table.get_item(Key={"pk": f"PACKAGE#{package_arn}", "sk": "SHADOW"}).get("Item")
        return dict(item) if item else None

    # ------------------------------------------------------------------ shadow agreement per candidate
    def add_shadow_window(
        self,
        version: str,
        thing: str,
        window_end: str,
        counters: Mapping[str, int],
        latency_p95_ms: float | None = None,
        package_arn: str | None = None,
    ) -> bool:
        """Add one health window's counters to the device's totals for candidate ``version`` (one UpdateItem, ADD).

        A window is added once: its end time must be later than the last one added (a QoS 1 redelivery or a Lambda
        retry of the same message is refused by the condition and returns False)."""
        sets = ["#windows = if_not_exists(#windows, :zero) + :one"]
        names = {"#windows": "windows"}
        values: dict[str, Any] = {":zero": 0, ":one": 1}
        if package_arn:
            sets.append("#arn = :arn")
            names["#arn"] = "model_package_arn"
            values[":arn"] = package_arn
        return self._add_window(f"SHADOW#{version}", thing, window_end, counters, latency_p95_ms, sets, names, values)

    def shadow_totals(self, version: str) -> dict[str, Any]:
        """Candidate ``version``'s counters summed over every device that ran it, with each device's own."""
        totals: dict[str, int] = {}
        devices: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :dev)",
            "ExpressionAttributeValues": {":pk": f"SHADOW#{version}", ":dev": "DEVICE#"},
            "ConsistentRead": True,
        }
        while True:
            page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                thing = str(item["sk"]).removeprefix("DEVICE#")
                own = {k: int(v) for k, v in item.items() if k in SHADOW_COUNTERS}
                devices[thing] = {
                    **own,
                    "last_window_end": item.get("last_window_end"),
                    "last_latency_p95_ms": float(item["last_latency_p95_ms"])
                    if item.get("last_latency_p95_ms")
                    else None,
                }
                for k, v in own.items():
                    totals[k] = totals.get(k, 0) + v
            if not page.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return {"version": version, "totals": totals, "devices": devices}

    # ------------------------------------------------------------------ per-model counters (a canary's evidence)
    def add_model_window(
        self,
        version: str,
        thing: str,
        window_end: str,
        counters: Mapping[str, int],
        errors_seen: int = 0,
        latency_p95_ms: float | None = None,
    ) -> bool:
        """Add one health window of ``thing`` serving model ``version`` (one UpdateItem, ADD; a window whose end is
        not later than the last one added is refused, so a redelivered message counts once). ``errors_seen`` is the
        device's running error count: the first one seen is kept, the errors of the model are the difference."""
        return self._add_window(
            f"MODEL#{version}",
            thing,
            window_end,
            counters,
            latency_p95_ms,
            ["#seen = :seen", "#first = if_not_exists(#first, :seen)"],
            {"#seen": "errors_seen", "#first": "errors_first"},
            {":seen": int(errors_seen)},
        )

    def _add_window(
        self,
        pk: str,
        thing: str,
        window_end: str,
        counters: Mapping[str, int],
        latency_p95_ms: float | None,
        sets: list[str],
        names: dict[str, str],
        values: dict[str, Any],
    ) -> bool:
        """One health window's ``counters`` ADDed to item (``pk``, DEVICE#``thing``) with the caller's extra ``sets``,
        once: the window's end must be later than the last one added (a QoS 1 redelivery or a Lambda retry of the
        same message is refused by the condition and returns False)."""
        names = {**names, **{f"#c{i}": name for i, name in enumerate(counters)}}
        values = {**values, **{f":c{i}": int(v) for i, v in enumerate(counters.values())}}
        add = ", ".join(f"#c{i} :c{i}" for i in range(len(counters)))
        sets = ["#end = :end", "#updated = :now", *sets]
        names.update({"#end": "last_window_end", "#updated": "updated"})
        values.update({":end": window_end, ":now": utc_now()})
        if latency_p95_ms is not None:
            # the window before keeps its p95 too: every action reads the item as it was before the update
            # (DynamoDB Developer Guide, "Using update expressions"), so #prev gets the last window's value
            sets += ["#prev = if_not_exists(#p95, :nop95)", "#p95 = :p95"]
            names.update({"#p95": "last_latency_p95_ms", "#prev": "prev_latency_p95_ms"})
            values.update({":p95": str(latency_p95_ms), ":nop95": ""})
        try:
            self.table.update_item(
                Key={"pk": pk, "sk": f"DEVICE#{thing}"},
                UpdateExpression=f"SET {', '.join(sets)}" + (f" ADD {add}" if add else ""),
                ConditionExpression="attribute_not_exists(#end) OR #end < :end",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    def model_counters(self, version: str, things: Iterable[str]) -> dict[str, dict[str, Any]]:
        """What each of ``things`` reported serving model ``version``: ``frames``, ``uncertain``, ``ng``, ``errors``
        (since its first window of the model), its last window's ``latency_p95_ms`` and ``sustained_p95_ms``, the
        smaller p95 of its last two windows (None with one window: a burst in one window is not a latency); devices
        that never did are absent."""
        client, name = self.table.meta.client, self.table.name
        wanted = sorted(set(things))
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), BATCH_GET_KEYS):
            keys = [{"pk": f"MODEL#{version}", "sk": f"DEVICE#{t}"} for t in wanted[start : start + BATCH_GET_KEYS]]
            request: dict[str, Any] = {name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                got = client.batch_get_item(RequestItems=request)
                for item in got.get("Responses", {}).get(name, []):
                    p95 = item.get("last_latency_p95_ms")
                    prev = item.get("prev_latency_p95_ms")
                    last = float(p95) if p95 not in (None, "") else None
                    out[str(item["sk"]).removeprefix("DEVICE#")] = {
                        **{k: int(item.get(k, 0)) for k in ("frames", "uncertain", "ng")},
                        "errors": max(0, int(item.get("errors_seen", 0)) - int(item.get("errors_first", 0))),
                        "latency_p95_ms": last,
                        "sustained_p95_ms": None if last is None or prev in (None, "") else min(last, float(prev)),
                    }
                request = got.get("UnprocessedKeys") or {}
        return out

    # ------------------------------------------------------------------ the canary on the group
    def put_canary(self, thing_group: str, fields: Mapping[str, Any]) -> None:
        self.table.put_item(Item={**_target(thing_group, "CANARY"), **_ddb(dict(fields)), "updated": utc_now()})

    def canary(self, thing_group: str) -> dict[str, Any] | None:
        return self.current_target(thing_group, "CANARY")

    def set_canary_hold(self, thing_group: str, run_id: str, hold: Mapping[str, Any]) -> bool:
        """The running canary of ``run_id`` is held for labels: why, and the numbers (``loupe canary status``). An
        update, not a put: a person's verdict given meanwhile stays. False when the item is another run's."""
        try:
            self.table.update_item(
                Key=_target(thing_group, "CANARY"),
                UpdateExpression="SET #h = :h, updated = :now",
                ConditionExpression="#r = :run AND #s = :running",
                ExpressionAttributeNames={"#h": "hold", "#r": "run_id", "#s": "status"},
                ExpressionAttributeValues={
                    ":h": _ddb(dict(hold)),
                    ":run": run_id,
                    ":running": "RUNNING",
                    ":now": utc_now(),
                },
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    def set_canary_override(self, thing_group: str, verdict: str, who: str, reason: str) -> str:
        """A person's verdict on the group's running canary (``promote`` or ``rollback``); returns the run it was
        given to. ValueError when no canary runs, or it has a verdict already."""
        if verdict not in ("promote", "rollback"):
            raise ValueError(f"a canary is promoted or rolled back, not {verdict!r}")
        try:
            out = self.table.update_item(
                Key=_target(thing_group, "CANARY"),
                UpdateExpression="SET #o = :o",
                ConditionExpression="attribute_exists(pk) AND #s = :running AND attribute_not_exists(#o)",
                ExpressionAttributeNames={"#o": "override", "#s": "status"},
                ExpressionAttributeValues={
                    ":o": {"verdict": verdict, "who": who, "reason": reason, "at": utc_now()},
                    ":running": "RUNNING",
                },
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if is_conditional_check_failed(exc):
                raise ValueError(f"no canary waits for a verdict on thing group {thing_group}") from exc
            raise
        return str(out["Attributes"].get("run_id", ""))

    # ------------------------------------------------------------------
    def _delete_if(self, key: dict[str, str], **condition: Any) -> None:
        """Delete ``key`` when the condition holds; a failed condition is a normal outcome (someone else's item)."""
        try:
            self.table.delete_item(Key=key, **condition)
        except Exception as exc:
            if not is_conditional_check_failed(exc):
                raise
