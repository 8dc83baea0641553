"""Which model version each device serves, as its health messages say: the proof a deployment is serving.

``functions/edge_health`` records every health message's ``model_version`` here (one item per device in the
deployments table); the edge deployment workflow reads it to tell "deployed" (Greengrass says the components are
installed) from "serving" (the device answers with the new model).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)


def _key(thing: str) -> dict[str, str]:
    return {"pk": f"DEVICE#{thing}", "sk": "SERVING"}


def record(table: Any, thing: str, model_version: str | None) -> bool:
    """Remember the model version ``thing`` reports serving; a message without one changes nothing."""
    if not thing or not model_version:
        return False
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    table.put_item(Item={**_key(thing), "model_version": str(model_version), "updated": now})
    return True


def serving_version(table: Any, thing: str) -> str | None:
    item = table.get_item(Key=_key(thing), ConsistentRead=True).get("Item")
    return str(item["model_version"]) if item and item.get("model_version") else None


_TABLE: Any = None


def record_health(health: Any, table: Any = None) -> bool:
    """The one call ``functions/edge_health`` makes per health message (the table from ``DEPLOYMENTS_TABLE``)."""
    global _TABLE
    if table is None:
        if _TABLE is None:
            import boto3

            from loupe import settings

            name = settings.load().deployments_table
            if not name:
                return False
            _TABLE = boto3.resource("dynamodb").Table(name)
        table = _TABLE
    # the thing the message came from (its topic) when the rule passes it on, else the one the payload names
    thing = getattr(health, "source_thing", None) or getattr(health, "thing", "")
    try:
        return record(table, thing, getattr(health, "model_version", None))
    except (BotoCoreError, ClientError) as exc:  # the metrics still go out; the workflow waits and says so
        log.warning("cannot record what %s serves: %s", thing, exc)
        return False


def serving_versions(dynamodb: Any, table_name: str, things: list[str]) -> dict[str, str]:
    """What each of ``things`` reports serving: BatchGetItem, 100 keys a call (unprocessed keys retried)."""
    out: dict[str, str] = {}
    for start in range(0, len(things), 100):
        request: dict[str, Any] = {
            table_name: {"Keys": [_key(t) for t in things[start : start + 100]], "ConsistentRead": True}
        }
        while request:
            got = dynamodb.batch_get_item(RequestItems=request)
            for item in got.get("Responses", {}).get(table_name, []):
                if item.get("model_version"):
                    out[str(item["pk"]).removeprefix("DEVICE#")] = str(item["model_version"])
            request = got.get("UnprocessedKeys") or {}
    return out
