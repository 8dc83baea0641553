"""The image ledger (DynamoDB, key ``sha256``): one entry per distinct image content, and its life.

Statuses: ``unlabeled`` -> ``claimed`` -> ``labeled`` | back to ``unlabeled``; ``rejected`` for bad input.
GSI ``status-index`` (status, updated_at) lists entries by status, oldest first. Every transition is a
conditional write, so two writers never both move one entry (two triggers never claim the same image).

Besides images the table holds a few bookkeeping items whose key starts with ``#`` (no ``status`` attribute, so
they stay out of the index): ``#labeling-job#<name>`` (the task token a labeling execution waits with),
``#claim#<claim id>`` (the jobs of a claim) and ``#dataset-versions`` (the dataset version counter).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key

from loupe import aws_errors
from loupe.aws_clients import DynamoDBTable

UNLABELED = "unlabeled"
CLAIMED = "claimed"
LABELED = "labeled"
REJECTED = "rejected"
STATUSES = (UNLABELED, CLAIMED, LABELED, REJECTED)
STATUS_INDEX = "status-index"
JOB_PREFIX = "#labeling-job#"
CLAIM_PREFIX = "#claim#"
VERSIONS_KEY = "#dataset-versions"
RELEASE_BACKOFF_SECONDS = 15 * 60


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def plain(value: Any) -> Any:
    """DynamoDB values (Decimal, set) as plain JSON-able Python values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return sorted(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def query_items(table: DynamoDBTable, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item a Query returns, page by page (``LastEvaluatedKey``), as plain values."""
    while True:
        page = table.query(**kwargs)
        for item in page.get("Items", []):
            yield plain(item)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _ready_filter(ready_at: str | None) -> dict[str, Any]:
    if ready_at is None:
        return {}
    return {
        "FilterExpression": "attribute_not_exists(retry_after) OR retry_after <= :ready",
        "ExpressionAttributeValues": {":ready": ready_at},
    }


class Ledger:
    def __init__(self, table: DynamoDBTable) -> None:
        self.table = table

    @classmethod
    def from_name(cls, name: str, dynamodb: Any = None) -> Ledger:
        """The ledger table ``name``; without ``dynamodb`` its boto3 resource is made on first use."""
        if dynamodb is not None:
            return cls(dynamodb.Table(name))
        from loupe.aws_clients import lazy_table

        return cls(lazy_table(name))

    # ------------------------------------------------------------------ recording
    def _create_or_add_key(self, item: dict[str, Any], source_uri: str) -> tuple[bool, dict[str, Any]]:
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(sha256)")
            return True, item
        except Exception as exc:
            if not aws_errors.is_conditional_check_failed(exc):
                raise
        # The same content again (another key, or the same key again): remember the key, change nothing else.
        out = self.table.update_item(
            Key={"sha256": item["sha256"]},
            UpdateExpression="ADD source_keys :k",
            ExpressionAttributeValues={":k": {source_uri}},
            ConditionExpression="attribute_exists(sha256)",
            ReturnValues="ALL_NEW",
        )
        return False, out["Attributes"]

    def record_image(self, info: Any, source_uri: str, image_uri: str, origin: dict[str, Any]) -> tuple[bool, str]:
        """A new accepted image (``info``: :class:`loupe.imaging.Inspected`); returns (created, status)."""
        now = now_iso()
        item = {
            "sha256": info.sha256,
            "status": UNLABELED,
            "created_at": now,
            "updated_at": now,
            "source_keys": {source_uri},
            "image_uri": image_uri,
            "format": info.format,
            "size": info.size,
            "width": info.width,
            "height": info.height,
            "mode": info.mode,
            "orientation": info.orientation,
            "normalized": info.normalized is not None,
            "origin": origin,
        }
        if info.notes:
            item["notes"] = list(info.notes)
        created, current = self._create_or_add_key(item, source_uri)
        return created, str(current.get("status", UNLABELED))

    def record_labeled_import(
        self,
        sha256: str,
        source_uri: str,
        image_uri: str,
        fmt: str,
        size: int,
        width: int,
        height: int,
        annotations: list[dict[str, Any]],
        origin: dict[str, Any],
        labeling_job: str,
    ) -> bool:
        """An image that arrives already labeled (``loupe import``): created labeled, or its labels set."""
        now = now_iso()
        item = {
            "sha256": sha256,
            "status": LABELED,
            "created_at": now,
            "updated_at": now,
            "labeled_at": now,
            "source_keys": {source_uri},
            "image_uri": image_uri,
            "format": fmt,
            "size": size,
            "width": width,
            "height": height,
            "normalized": False,
            "origin": origin,
            "annotations": json.dumps(annotations),
            "labeling_job": labeling_job,
        }
        created, current = self._create_or_add_key(item, source_uri)
        if not created and current.get("status") in (UNLABELED, REJECTED, LABELED):
            self.table.update_item(
                Key={"sha256": sha256},
                UpdateExpression=(
                    "SET #s = :labeled, updated_at = :now, labeled_at = :now, annotations = :a, labeling_job = :j"
                ),
                ConditionExpression="#s <> :claimed",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":labeled": LABELED,
                    ":now": now,
                    ":a": json.dumps(annotations),
                    ":j": labeling_job,
                    ":claimed": CLAIMED,
                },
            )
        return created

    def record_rejected(
        self,
        digest: str,
        source_uri: str,
        size: int,
        reason: str,
        code: str,
        origin: dict[str, Any],
        quarantine: str = "",
    ) -> bool:
        now = now_iso()
        item = {
            "sha256": digest,
            "status": REJECTED,
            "created_at": now,
            "updated_at": now,
            "source_keys": {source_uri},
            "size": size,
            "reason": reason,
            "reason_code": code,
            "origin": origin,
        }
        if quarantine:
            item["quarantine_key"] = quarantine
        created, _ = self._create_or_add_key(item, source_uri)
        return created

    # ------------------------------------------------------------------ reading
    def get(self, sha256: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"sha256": sha256}, ConsistentRead=True).get("Item")
        return plain(item) if item else None

    def get_many(self, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for sha in dict.fromkeys(hashes):
            item = self.get(sha)
            if item:
                out[sha] = item
        return out

    def by_status(self, status: str, limit: int | None = None, ready_at: str | None = None) -> Iterator[dict[str, Any]]:
        """Entries with ``status``, oldest update first; with ``ready_at``, only those not backing off then."""
        kwargs: dict[str, Any] = {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": Key("status").eq(status),
            "ScanIndexForward": True,
            **_ready_filter(ready_at),
        }
        yield from itertools.islice(query_items(self.table, **kwargs), limit)

    def labeled_feedback(self, since: str, model_versions: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Edge-feedback entries labeled since ``since`` (ISO-8601, as ``updated_at`` is written) whose frames were
        recorded since then too and ran one of ``model_versions`` (``origin.model_version``): one Query of the
        status index on (labeled, updated_at >= since), page by page; the rest is a filter on the pages read."""
        versions = sorted({str(v) for v in model_versions if v})
        if not versions:
            return
        names = {"#s": "status", "#u": "updated_at", "#o": "origin", "#k": "kind", "#m": "model_version"}
        values: dict[str, Any] = {":since": since, ":fb": "edge_feedback"}
        for i, version in enumerate(versions):
            values[f":v{i}"] = version
        listed = ", ".join(f":v{i}" for i in range(len(versions)))
        kwargs: dict[str, Any] = {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#s = :labeled AND #u >= :since",
            "FilterExpression": f"created_at >= :since AND #o.#k = :fb AND #o.#m IN ({listed})",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":labeled": LABELED, **values},
        }
        yield from query_items(self.table, **kwargs)

    def count(self, status: str, stop_at: int | None = None, ready_at: str | None = None) -> int:
        kwargs: dict[str, Any] = {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": Key("status").eq(status),
            "Select": "COUNT",
            **_ready_filter(ready_at),
        }
        total = 0
        while True:
            page = self.table.query(**kwargs)
            total += int(page.get("Count", 0))
            if (stop_at is not None and total >= stop_at) or "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ------------------------------------------------------------------ transitions
    def claim(self, hashes: Iterable[str], claim_id: str) -> list[str]:
        """Move each entry unlabeled -> claimed under ``claim_id``; returns those this call won."""
        won = []
        now = now_iso()
        for sha in hashes:
            try:
                self.table.update_item(
                    Key={"sha256": sha},
                    UpdateExpression="SET #s = :claimed, claim_id = :c, claimed_at = :now, updated_at = :now",
                    ConditionExpression="#s = :unlabeled",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={
                        ":claimed": CLAIMED,
                        ":unlabeled": UNLABELED,
                        ":c": claim_id,
                        ":now": now,
                    },
                )
                won.append(sha)
            except Exception as exc:
                if not aws_errors.is_conditional_check_failed(exc):
                    raise
        return won

    def release(
        self, hashes: Iterable[str], claim_id: str, reason: str, backoff_seconds: int = RELEASE_BACKOFF_SECONDS
    ) -> list[str]:
        """Entries still claimed by ``claim_id`` go back to unlabeled (with the reason); returns them.

        A released image waits ``backoff_seconds`` before threshold/schedule runs take it again (a run that keeps
        failing, e.g. on a misconfigured role, must not loop on every new image); explicit requests ignore it.
        """
        released = []
        now = datetime.now(UTC)
        retry_after = (now + timedelta(seconds=backoff_seconds)).isoformat(timespec="microseconds")
        for sha in hashes:
            try:
                self.table.update_item(
                    Key={"sha256": sha},
                    UpdateExpression=(
                        "SET #s = :unlabeled, updated_at = :now, last_failure = :r, retry_after = :ra "
                        "ADD label_failures :one REMOVE claim_id, claimed_at"
                    ),
                    ConditionExpression="#s = :claimed AND claim_id = :c",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={
                        ":claimed": CLAIMED,
                        ":unlabeled": UNLABELED,
                        ":c": claim_id,
                        ":now": now.isoformat(timespec="microseconds"),
                        ":r": reason[:1000],
                        ":ra": retry_after,
                        ":one": 1,
                    },
                )
                released.append(sha)
            except Exception as exc:
                if not aws_errors.is_conditional_check_failed(exc):
                    raise
        return released

    def set_pending_labels(self, sha256: str, claim_id: str, annotations: list[dict[str, Any]], job: str) -> bool:
        """Store a worker's labels on a claimed entry, awaiting verification (status stays claimed)."""
        return self._claimed_update(
            sha256,
            claim_id,
            "SET pending_annotations = :a, labeling_job = :j, updated_at = :now",
            {":a": json.dumps(annotations), ":j": job},
        )

    def mark_labeled(
        self, sha256: str, claim_id: str, annotations: list[dict[str, Any]], job: str, verification: str = ""
    ) -> bool:
        values = {":labeled": LABELED, ":a": json.dumps(annotations), ":j": job, ":v": verification}
        return self._claimed_update(
            sha256,
            claim_id,
            "SET #s = :labeled, annotations = :a, labeling_job = :j, verification = :v, labeled_at = :now, "
            "updated_at = :now REMOVE claim_id, claimed_at, pending_annotations, retry_after",
            values,
            names={"#s": "status"},
        )

    def _claimed_update(
        self,
        sha256: str,
        claim_id: str,
        expression: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        try:
            self.table.update_item(
                Key={"sha256": sha256},
                UpdateExpression=expression,
                ConditionExpression="#s = :claimed AND claim_id = :c",
                ExpressionAttributeNames={"#s": "status", **(names or {})},
                ExpressionAttributeValues={":claimed": CLAIMED, ":c": claim_id, ":now": now_iso(), **values},
            )
            return True
        except Exception as exc:
            if not aws_errors.is_conditional_check_failed(exc):
                raise
            return False

    def add_dataset_version(self, hashes: Iterable[str], version: int) -> None:
        for sha in hashes:
            self.table.update_item(
                Key={"sha256": sha},
                UpdateExpression="ADD dataset_versions :v",
                ConditionExpression="attribute_exists(sha256)",
                ExpressionAttributeValues={":v": {version}},
            )

    # ------------------------------------------------------------------ labeling jobs (task tokens)
    def put_job(self, name: str, **fields: Any) -> None:
        self.table.put_item(
            Item={"sha256": JOB_PREFIX + name, "kind": "labeling_job", "created_at": now_iso(), **fields}
        )
        if fields.get("claim_id"):  # the claim remembers its jobs, so a failed run can stop them
            self.table.update_item(
                Key={"sha256": CLAIM_PREFIX + str(fields["claim_id"])},
                UpdateExpression="ADD jobs :j",
                ExpressionAttributeValues={":j": {name}},
            )

    def claim_jobs(self, claim_id: str) -> list[str]:
        return list((self.get(CLAIM_PREFIX + claim_id) or {}).get("jobs") or [])

    def get_job(self, name: str) -> dict[str, Any] | None:
        return self.get(JOB_PREFIX + name)

    # ------------------------------------------------------------------ dataset versions
    def reserve_version(self) -> int:
        """A new dataset version number, never handed out twice."""
        out = self.table.update_item(
            Key={"sha256": VERSIONS_KEY},
            UpdateExpression="ADD next_version :one",
            ExpressionAttributeValues={":one": 1},
            ReturnValues="UPDATED_NEW",
        )
        return int(out["Attributes"]["next_version"])

    def latest_version(self) -> int | None:
        item = self.get(VERSIONS_KEY) or {}
        latest = item.get("latest")
        return int(latest) if latest else None

    def complete_version(self, version: int) -> None:
        """Record ``version`` as written; ``latest`` only moves forward."""
        try:
            self.table.update_item(
                Key={"sha256": VERSIONS_KEY},
                UpdateExpression="SET latest = :v, updated = :now",
                ConditionExpression="attribute_not_exists(latest) OR latest < :v",
                ExpressionAttributeValues={":v": version, ":now": now_iso()},
            )
        except Exception as exc:
            if not aws_errors.is_conditional_check_failed(exc):
                raise
