"""Image Recorded / schedule / drift alarm / manual -> claim unlabeled images, start one labeling execution."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import eventbridge
from loupe import settings as settings_mod
from loupe.aws_clients import lazy_client
from loupe.labeling import trigger
from loupe.labeling.trigger import TriggerEvent
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()

SETTINGS = settings_mod.load()
SETTINGS.require("ledger_table", "labeling_state_machine_arn")
STATE_MACHINE_ARN = str(SETTINGS.labeling_state_machine_arn)
sfn = lazy_client("stepfunctions")
ledger = Ledger.from_name(str(SETTINGS.ledger_table))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@eventbridge.ignore_foreign  # another alarm of the account, or the drift alarm going back to OK
@event_parser(model=TriggerEvent)
def lambda_handler(event: TriggerEvent, context: LambdaContext) -> dict[str, Any]:
    """Events: EventBridge ``Image Recorded`` (threshold), ``{"reason": "schedule"}``, the drift alarm's state
    change, or ``{"reason": "manual", "sha256": [...]}`` to label given images now. Any other alarm of the account
    is ignored with one log line."""
    result, swept = trigger.on_trigger(
        event,
        ledger,
        sfn,
        state_machine_arn=STATE_MACHINE_ARN,
        threshold=SETTINGS.labeling_threshold,
        max_per_job=SETTINGS.labeling_max_per_job,
        drift_alarm_arn=SETTINGS.drift_alarm_arn,
    )
    if swept:
        logger.warning("released stranded claims", extra={"claims": {k: len(v) for k, v in swept.items()}})
    logger.info("labeling trigger", extra=result)
    return result
