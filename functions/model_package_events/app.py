"""EventBridge "SageMaker Model Package State Change" → one edge deployment run per approval (or rejection)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer

from loupe import deployment, eventbridge, settings

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict:
    cfg = settings.load()
    cfg.require("deployments_table", "edge_deployment_state_machine_arn", "thing_group_name", "model_package_group")
    try:
        change = eventbridge.model_package_state_change(event, cfg.model_package_group)
    except eventbridge.Ignored as skip:  # packages of the account's other groups
        logger.info(f"ignored: {skip.reason}")
        return eventbridge.ignored(skip)
    decision = deployment.on_package_event(
        dict(event["detail"]),
        sm=boto3.client("sagemaker"),
        sfn=boto3.client("stepfunctions"),
        table=boto3.resource("dynamodb").Table(cfg.deployments_table),
        state_machine_arn=cfg.edge_deployment_state_machine_arn,
        thing_group=cfg.thing_group_name,
        group_name=cfg.model_package_group,
    )
    logger.info("model package event handled", extra={"event_id": change.id, **decision})
    return decision
