"""EventBridge "SageMaker Model Package State Change" → one edge deployment run per approval (or rejection)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import eventbridge, settings
from loupe.deployment import routing
from loupe.deployment.clients import AwsClients

logger = Logger()
tracer = Tracer()

SETTINGS = settings.load()
SETTINGS.require("deployments_table", "edge_deployment_state_machine_arn", "thing_group_name", "model_package_group")
aws = AwsClients(SETTINGS)  # each client made on first use (an ignored event makes none), kept while warm


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@eventbridge.ignore_foreign  # packages of the account's other groups
@event_parser(model=eventbridge.ModelPackageStateChange)
def lambda_handler(change: eventbridge.ModelPackageStateChange, context: LambdaContext) -> dict[str, Any]:
    decision = routing.on_package_change(change, SETTINGS, aws)
    logger.info("model package event handled", extra={"event_id": change.id, **decision})
    return decision
