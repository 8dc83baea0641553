"""The labeling trigger: which event asks for labeling (and why), and the claim + start of one labeling run."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, RootModel, model_validator

from loupe import eventbridge
from loupe.aws_clients import StepFunctions
from loupe.labeling import release
from loupe.labeling.config import LabelingError
from loupe.ledger import UNLABELED, Ledger


class DirectRequest(BaseModel):
    """``{"reason": "schedule"}``, or ``{"reason": "manual", "sha256": [...]}`` to label given images now."""

    reason: str = ""
    sha256: list[str] | None = None


TriggerKind = DirectRequest | eventbridge.ImageRecorded | eventbridge.AlarmStateChange | eventbridge.ScheduledEvent


class TriggerEvent(RootModel[TriggerKind]):
    """Every event the trigger takes; any other raises a ``ValueError`` that names its source and detail-type."""

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        model = _kind(value)
        if model is None:
            raise ValueError(
                f"not a labeling trigger event: source={value.get('source')!r} "
                f"detail-type={value.get('detail-type', '')!r}"
            )
        return model.model_validate(value)


def _kind(
    event: dict[str, Any],
) -> (
    type[DirectRequest]
    | type[eventbridge.ImageRecorded]
    | type[eventbridge.AlarmStateChange]
    | type[eventbridge.ScheduledEvent]
    | None
):
    if isinstance(event.get("sha256"), list) or event.get("reason"):
        return DirectRequest
    detail_type = event.get("detail-type", "")
    if detail_type == eventbridge.IMAGE_RECORDED and event.get("source") == eventbridge.INGEST_SOURCE:
        return eventbridge.ImageRecorded
    if detail_type == eventbridge.ALARM_STATE_CHANGE:
        return eventbridge.AlarmStateChange
    if detail_type == eventbridge.SCHEDULED_EVENT:
        return eventbridge.ScheduledEvent
    return None


def trigger_reason(event: TriggerEvent, drift_alarm_arn: str | None = None) -> tuple[str, list[str]]:
    """(reason, explicitly requested hashes) of a trigger event.

    An alarm state change counts only for Loupe's drift alarm going into ALARM: any other alarm of the account, or
    another state, raises :class:`loupe.eventbridge.Ignored`."""
    kind = event.root
    if isinstance(kind, DirectRequest):
        if kind.sha256 is not None:
            return kind.reason or "manual", [str(s) for s in kind.sha256]
        return kind.reason, []
    if isinstance(kind, eventbridge.ImageRecorded):
        return "threshold", []
    if isinstance(kind, eventbridge.AlarmStateChange):
        if not drift_alarm_arn:
            raise LabelingError("DRIFT_ALARM_ARN is not set: cannot tell Loupe's drift alarm from the account's others")
        eventbridge.check_alarm(kind, drift_alarm_arn)
        return "drift", []
    return "schedule", []


def new_claim_id(hashes: list[str], now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dt%H%M%S")
    digest = hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:8]
    return f"{stamp}-{digest}"


def run_trigger(
    ledger: Ledger,
    sfn: StepFunctions,
    state_machine_arn: str,
    threshold: int,
    max_per_job: int,
    reason: str,
    requested: list[str] | None = None,
) -> dict[str, Any]:
    """Claim unlabeled images and start one labeling execution for them (or explain why not)."""
    if requested:
        candidates = list(dict.fromkeys(requested))[:max_per_job]
        unlabeled = len(candidates)
    else:
        ready = datetime.now(UTC).isoformat(timespec="microseconds")  # images released recently back off
        unlabeled = ledger.count(UNLABELED, stop_at=max(threshold, 1), ready_at=ready)
        if unlabeled == 0 or (reason == "threshold" and unlabeled < threshold):
            return {"started": False, "reason": reason, "unlabeled": unlabeled, "threshold": threshold}
        candidates = [item["sha256"] for item in ledger.by_status(UNLABELED, limit=max_per_job, ready_at=ready)]
    claim_id = new_claim_id(candidates)
    won = ledger.claim(candidates, claim_id)
    if not won:
        return {"started": False, "reason": reason, "unlabeled": unlabeled, "claimed": 0}
    name = f"labeling-{claim_id}"
    payload = {"claim_id": claim_id, "images": won, "reason": reason}
    try:
        out = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
    except Exception as exc:
        ledger.release(won, claim_id, f"could not start the labeling run: {exc}")
        raise
    return {
        "started": True,
        "reason": reason,
        "claim_id": claim_id,
        "claimed": len(won),
        "execution_arn": out["executionArn"],
    }


def on_trigger(
    event: TriggerEvent,
    ledger: Ledger,
    sfn: StepFunctions,
    *,
    state_machine_arn: str,
    threshold: int,
    max_per_job: int,
    drift_alarm_arn: str | None,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """One trigger event: (the run started or why not, the stranded claims released first).

    A schedule or a manual request first sweeps claims whose labeling run can no longer label them."""
    reason, requested = trigger_reason(event, drift_alarm_arn=drift_alarm_arn)
    swept: dict[str, list[str]] = {}
    if reason in ("schedule", "manual"):
        swept = release.sweep_stale_claims(ledger, sfn, state_machine_arn)
    result = run_trigger(
        ledger,
        sfn,
        state_machine_arn,
        threshold=threshold,
        max_per_job=max_per_job,
        reason=reason,
        requested=requested,
    )
    return result, swept
