"""The labeling state machine's task worker: one envelope ``{"task", "input", "token"?}`` (``loupe.tasks``),
one domain call per task (``loupe.labeling.tasks``)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import settings as settings_mod
from loupe.aws_clients import lazy_client, lazy_table
from loupe.labeling.config import LabelingConfig
from loupe.labeling.task_store import TaskStore
from loupe.labeling.tasks import LabelingTasks
from loupe.ledger import Ledger
from loupe.tasks import TaskEnvelope

logger = Logger()
tracer = Tracer()

SETTINGS = settings_mod.load()
SETTINGS.require("raw_bucket", "artifact_bucket", "ledger_table")

s3 = lazy_client("s3")
sagemaker = lazy_client("sagemaker")
featurestore = lazy_client("sagemaker-featurestore-runtime")
sfn = lazy_client("stepfunctions")
ledger = Ledger.from_name(str(SETTINGS.ledger_table))
app_store = TaskStore(lazy_table(SETTINGS.labeling_tasks_table)) if SETTINGS.labeling_tasks_table else None
tasks = LabelingTasks(s3, sagemaker, featurestore, sfn, ledger, LabelingConfig.from_settings(SETTINGS), app_store)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=TaskEnvelope)
def lambda_handler(event: TaskEnvelope, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(task=event.task, claim_id=event.input.get("claim_id"))
    result = tasks.run(event)
    logger.info("task done", extra={"result": {k: v for k, v in result.items() if k != "images"}})
    return result
