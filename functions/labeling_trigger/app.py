"""Image Recorded / schedule / drift alarm / manual -> claim unlabeled images, start one labeling execution."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer

from loupe import eventbridge, labeling
from loupe import settings as settings_mod
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()

SETTINGS = settings_mod.load()
SETTINGS.require("ledger_table", "labeling_state_machine_arn")
sfn = boto3.client("stepfunctions")
ledger = Ledger.from_name(SETTINGS.ledger_table)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Events: EventBridge ``Image Recorded`` (threshold), ``{"reason": "schedule"}``, the drift alarm's state
    change, or ``{"reason": "manual", "sha256": [...]}`` to label given images now. Any other alarm of the account
    is ignored with one log line."""
    try:
        reason, requested = labeling.trigger_reason(event, drift_alarm_arn=SETTINGS.drift_alarm_arn)
    except eventbridge.Ignored as skip:
        logger.info(f"ignored: {skip.reason}")
        return eventbridge.ignored(skip)
    if reason in ("schedule", "manual"):
        swept = labeling.sweep_stale_claims(ledger, sfn, SETTINGS.labeling_state_machine_arn)
        if swept:
            logger.warning("released stranded claims", extra={"claims": {k: len(v) for k, v in swept.items()}})
    result = labeling.run_trigger(
        ledger,
        sfn,
        SETTINGS.labeling_state_machine_arn,
        threshold=SETTINGS.labeling_threshold,
        max_per_job=SETTINGS.labeling_max_per_job,
        reason=reason,
        requested=requested,
    )
    logger.info("labeling trigger", extra=result)
    return result
