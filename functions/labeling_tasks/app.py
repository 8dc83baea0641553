"""The labeling state machine's task worker: one envelope ``{"task", "input", "token"?}`` (``loupe.tasks``),
one domain call per task (``loupe.labeling.tasks``)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import settings
from loupe.labeling import tasks
from loupe.labeling.clients import LabelingClients
from loupe.tasks import TaskEnvelope

logger = Logger()
tracer = Tracer()

SETTINGS = settings.load()
clients = LabelingClients(SETTINGS)  # each client made on first use, kept while the container is warm


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=TaskEnvelope)
def lambda_handler(event: TaskEnvelope, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(task=event.task, claim_id=event.input.get("claim_id"))
    result = tasks.run(event, clients)
    logger.info("task done", extra={"result": {k: v for k, v in result.items() if k != "images"}})
    return result
