"""EventBridge "SageMaker Model Package State Change" → one edge deployment run per approval (or rejection)."""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from loupe import deployment, settings

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context) -> dict:
    if event.detail_type != "SageMaker Model Package State Change":
        raise deployment.PackageInvalid(f"unexpected event {event.detail_type!r}")
    cfg = settings.load()
    cfg.require("deployments_table", "edge_deployment_state_machine_arn", "thing_group_name", "model_package_group")
    decision = deployment.on_package_event(
        dict(event.detail),
        sm=boto3.client("sagemaker"),
        sfn=boto3.client("stepfunctions"),
        table=boto3.resource("dynamodb").Table(cfg.deployments_table),
        state_machine_arn=cfg.edge_deployment_state_machine_arn,
        thing_group=cfg.thing_group_name,
        group_name=cfg.model_package_group,
    )
    logger.info("model package event handled", extra={"event_id": event.get_id, **decision})
    return decision
