"""S3 Object Created (EventBridge) on raw/ -> validate by content, record once in the ledger, quarantine bad input."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from loupe import eventbridge
from loupe import settings as settings_mod
from loupe.ingest import ObjectRef, announcer, ingest_object
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = settings_mod.load()
SETTINGS.require("raw_bucket", "ledger_table", "idempotency_table")
persistence = DynamoDBPersistenceLayer(table_name=SETTINGS.idempotency_table)
# One processing per object version: EventBridge redelivery, or an at-least-once duplicate, is answered from
# the idempotency record. (S3's event id is not used: the object identity is what must be processed once.)
idempotency = IdempotencyConfig(expires_after_seconds=24 * 3600, raise_on_no_idempotency_key=True)

s3 = boto3.client("s3")
events = boto3.client("events")
ledger = Ledger.from_name(SETTINGS.ledger_table)


announce = announcer(events)


@idempotent_function(data_keyword_argument="obj", config=idempotency, persistence_store=persistence)
def process(obj: dict[str, Any]) -> dict[str, Any]:
    result = ingest_object(s3, ledger, ObjectRef(**obj), announce=announce)
    metrics.add_metric(
        name="ImagesRejected" if result.status == "rejected" else "ImagesRecorded",
        unit=MetricUnit.Count,
        value=1 if result.created else 0,
    )
    return result.as_dict()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    try:
        parsed = eventbridge.raw_object_created(event, SETTINGS.raw_bucket)
    except eventbridge.Ignored as skip:  # another bucket of the account, or Loupe's own writes outside raw/
        logger.info(f"ignored: {skip.reason}")
        return eventbridge.ignored(skip)
    detail = parsed.detail
    # The object version is its identity; without versioning the ETag stands in for it.
    version = detail.object.version_id
    obj = {
        "bucket": detail.bucket.name,
        "key": detail.object.key,
        "version_id": version,
        "etag": None if version else detail.object.etag,
    }
    metrics.add_metric(name="IngestEvents", unit=MetricUnit.Count, value=1)  # also counts repeats answered idempotently
    result = process(obj=obj)
    logger.info("ingested", extra={"ingest": result})
    return result
