"""Task worker of statemachines/edge_deployment.asl.json: ``{"task", "input"}`` in, the run's state out."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import settings
from loupe.deployment import workflow
from loupe.deployment.clients import AwsClients
from loupe.tasks import TaskEnvelope

logger = Logger()
tracer = Tracer()

SETTINGS = settings.load()
SETTINGS.require("artifact_bucket", "thing_group_name", "deployments_table")
aws = AwsClients(SETTINGS)  # each client made on first use, kept while the container is warm


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=TaskEnvelope)
def lambda_handler(envelope: TaskEnvelope, context: LambdaContext) -> dict[str, Any]:
    state = workflow.run(envelope, aws)
    logger.info("deployment step done", extra={"task": envelope.task, "run_id": state.get("run_id")})
    return state
