"""SageMaker pipeline execution status change (EventBridge) -> a clear SNS message on the final outcome."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from loupe import eventbridge, pipeline_events
from loupe import settings as settings_mod

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = settings_mod.load()
SETTINGS.require("notify_topic_arn", "training_pipeline_name")
sagemaker = boto3.client("sagemaker")
sns = boto3.client("sns")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        change = eventbridge.pipeline_status_change(event, SETTINGS.training_pipeline_name)
    except eventbridge.Ignored as skip:  # the account's other pipelines: their steps are not ours to read
        logger.info(f"ignored: {skip.reason}")
        return eventbridge.ignored(skip)
    summary = pipeline_events.summarize(sagemaker, change.detail.model_dump(by_alias=True))
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
