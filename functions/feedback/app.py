"""IoT rule on loupe/+/low-confidence -> validate the announcement, record the uncertain frame for labeling."""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from loupe import feedback
from loupe import settings as settings_mod
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = settings_mod.load()
SETTINGS.require("raw_bucket", "ledger_table")
s3 = boto3.client("s3")
events = boto3.client("events")
ledger = Ledger.from_name(SETTINGS.ledger_table)


def announce(sha256: str, origin: dict[str, Any]) -> None:
    out = events.put_events(
        Entries=[
            {
                "Source": "loupe.ingest",
                "DetailType": "Image Recorded",
                "Detail": json.dumps({"sha256": sha256, "origin": origin}),
            }
        ]
    )
    if out.get("FailedEntryCount"):
        raise RuntimeError(f"could not announce {sha256}: {out['Entries']}")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # A rejected announcement raises: the topic rule's error action keeps it in the SQS error queue.
    result = feedback.handle(s3, ledger, event, SETTINGS.raw_bucket, announce=announce)
    metrics.add_metric(name="FeedbackFrames", unit=MetricUnit.Count, value=1)
    logger.info("feedback recorded", extra=result)
    return result
