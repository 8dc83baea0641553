"""IoT rule on loupe/+/low-confidence -> validate the announcement, record the uncertain frame for labeling."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from loupe import feedback
from loupe import settings as settings_mod
from loupe.ingest import announcer
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = settings_mod.load()
SETTINGS.require("raw_bucket", "ledger_table")
s3 = boto3.client("s3")
events = boto3.client("events")
ledger = Ledger.from_name(SETTINGS.ledger_table)


announce = announcer(events)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The rule invokes asynchronously: a rejected announcement is recorded and counted, not raised (it would only
    # be retried and dead-lettered); an AWS error raises, for Lambda's retries and the on-failure destination.
    result = feedback.handle(s3, ledger, event, SETTINGS.raw_bucket, announce=announce)
    if "rejected" in result:
        with single_metric(name="RejectedDeviceMessages", unit=MetricUnit.Count, value=1, namespace="Loupe") as m:
            m.add_dimension(name="kind", value="feedback")
        logger.warning("device message rejected", extra={"rejection": result})
        return result
    metrics.add_metric(name="FeedbackFrames", unit=MetricUnit.Count, value=1)
    logger.info("feedback recorded", extra={"result": result})
    return result
