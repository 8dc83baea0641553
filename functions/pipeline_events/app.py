"""SageMaker pipeline execution status change (EventBridge) -> a clear SNS message on the final outcome."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from loupe import pipeline_events
from loupe import settings as settings_mod

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = settings_mod.load()
SETTINGS.require("notify_topic_arn")
sagemaker = boto3.client("sagemaker")
sns = boto3.client("sns")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: Any) -> dict[str, Any]:
    summary = pipeline_events.summarize(sagemaker, event.detail)
    if summary["status"] not in pipeline_events.FINAL:
        return summary
    subject, text = pipeline_events.message(summary)
    sns.publish(TopicArn=SETTINGS.notify_topic_arn, Subject=subject[:100], Message=text)
    name = (
        "ModelsRegistered"
        if summary["registered_package"]
        else "GateRefusals"
        if summary["gate_refused"]
        else "PipelineFailures"
    )
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    logger.info("pipeline outcome", extra=summary)
    return summary
