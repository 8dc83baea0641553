"""Ground Truth labeling job state change -> resume the labeling execution waiting on that job's task token."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import eventbridge
from loupe import settings as settings_mod
from loupe.aws_clients import lazy_client
from loupe.labeling.callback import resume_waiting_execution
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()

SETTINGS = settings_mod.load()
SETTINGS.require("ledger_table")
sfn = lazy_client("stepfunctions")
ledger = Ledger.from_name(str(SETTINGS.ledger_table))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@eventbridge.ignore_foreign  # another account's or another Loupe stack's job
@event_parser(model=eventbridge.LabelingJobStateChange)
def lambda_handler(event: eventbridge.LabelingJobStateChange, context: LambdaContext) -> dict[str, Any]:
    result = resume_waiting_execution(sfn, ledger, eventbridge.check_labeling_job(event))
    gone = result.pop("token_gone", None)
    if gone:  # a duplicate event, or an execution that stopped waiting: nothing to resume
        logger.warning("task token no longer waits", extra={"job": result["job_name"], "error": gone})
    return result
