"""IoT rule on loupe/+/low-confidence -> validate the announcement, record the uncertain frame for labeling."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import feedback
from loupe import settings as settings_mod
from loupe.aws_clients import lazy_client
from loupe.ingest import announcer
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = settings_mod.load()
SETTINGS.require("raw_bucket", "ledger_table")
s3 = lazy_client("s3")
events = lazy_client("events")
ledger = Ledger.from_name(str(SETTINGS.ledger_table))
announce = announcer(events)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=feedback.RulePayload)
def lambda_handler(event: feedback.RulePayload, context: LambdaContext) -> dict[str, Any]:
    # The rule invokes asynchronously: a rejected announcement is recorded and counted, not raised (it would only
    # be retried and dead-lettered); an AWS error raises, for Lambda's retries and the on-failure destination.
    result = feedback.handle(s3, ledger, event.root, str(SETTINGS.raw_bucket), announce=announce)
    if "rejected" in result:
        with single_metric(name="RejectedDeviceMessages", unit=MetricUnit.Count, value=1, namespace="Loupe") as m:
            m.add_dimension(name="kind", value="feedback")
        logger.warning("device message rejected", extra={"rejection": result})
        return result
    metrics.add_metric(name="FeedbackFrames", unit=MetricUnit.Count, value=1)
    logger.info("feedback recorded", extra={"result": result})
    return result
