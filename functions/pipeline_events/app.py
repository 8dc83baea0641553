"""SageMaker pipeline execution status change (EventBridge) -> a clear SNS message on the final outcome."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import eventbridge, pipeline_events
from loupe import settings as settings_mod
from loupe.aws_clients import lazy_client

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = settings_mod.load()
SETTINGS.require("notify_topic_arn", "training_pipeline_name")
sagemaker = lazy_client("sagemaker")
sns = lazy_client("sns")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@eventbridge.ignore_foreign  # the account's other pipelines: their steps are not ours to read
@event_parser(model=eventbridge.PipelineExecutionStatusChange)
def lambda_handler(change: eventbridge.PipelineExecutionStatusChange, context: LambdaContext) -> dict[str, Any]:
    summary = pipeline_events.on_status_change(change, sagemaker, sns, SETTINGS)
    name = pipeline_events.metric_name(summary)
    if name:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        logger.info("pipeline outcome", extra=summary)
    return summary
