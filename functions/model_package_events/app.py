"""EventBridge "SageMaker Model Package State Change" → one edge deployment run per approval (or rejection)."""

from __future__ import annotations

import os

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from loupe import deployment

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context) -> dict:
    if event.detail_type != "SageMaker Model Package State Change":
        raise deployment.PackageInvalid(f"unexpected event {event.detail_type!r}")
    table = boto3.resource("dynamodb").Table(os.environ["DEPLOYMENTS_TABLE"])
    decision = deployment.on_package_event(
        dict(event.detail),
        sm=boto3.client("sagemaker"),
        sfn=boto3.client("stepfunctions"),
        table=table,
        state_machine_arn=os.environ["EDGE_DEPLOYMENT_STATE_MACHINE_ARN"],
        thing_group=os.environ["THING_GROUP_NAME"],
        group_name=os.environ.get("MODEL_PACKAGE_GROUP", ""),
    )
    logger.info("model package event handled", extra={"event_id": event.get_id, **decision})
    return decision
