"""S3 Object Created (EventBridge) on raw/ -> validate by content, record once in the ledger, quarantine bad input."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import eventbridge
from loupe import settings as settings_mod
from loupe.aws_clients import lazy_client
from loupe.ingest import ObjectRef, announcer, ingest_object, object_to_ingest
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

s3 = lazy_client("s3")
events = lazy_client("events")
ledger = Ledger.from_name(str(SETTINGS.ledger_table))
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
@eventbridge.ignore_foreign  # another bucket of the account, or Loupe's own writes outside raw/
@event_parser(model=S3EventNotificationEventBridgeModel)
def lambda_handler(event: S3EventNotificationEventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    obj = object_to_ingest(event, str(SETTINGS.raw_bucket))
    metrics.add_metric(name="IngestEvents", unit=MetricUnit.Count, value=1)  # also counts repeats answered idempotently
    result = process(obj=obj)
    logger.info("ingested", extra={"ingest": result})
    return result
