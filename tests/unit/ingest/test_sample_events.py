"""The sample events in events/ have the shapes the handlers parse."""

from __future__ import annotations

import json
from pathlib import Path

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

from loupe.ingest import key_candidates
from loupe.labeling.trigger import TriggerEvent, trigger_reason

EVENTS = Path(__file__).resolve().parents[3] / "events"


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_ingest_event_parses_and_its_key_decodes():
    parsed = parse(event=load("ingest_image.json"), model=S3EventNotificationEventBridgeModel)
    assert parsed.detail.bucket.name.startswith("loupe-rawbucket")
    assert key_candidates(parsed.detail.object.key)[0] == "raw/line-3/Prüfstation 2/tag-2026-11-21T221437.jpg"
    assert parsed.detail.object.version_id


def test_trigger_events():
    assert trigger_reason(TriggerEvent.model_validate(load("labeling_trigger.json"))) == ("threshold", [])
    reason, hashes = trigger_reason(TriggerEvent.model_validate(load("labeling_trigger_manual.json")))
    assert reason == "manual" and len(hashes) == 2


def test_callback_event_names_its_job():
    event = EventBridgeEvent(load("labeling_callback.json"))
    assert event.detail_type == "SageMaker Ground Truth Labeling Job State Change"
    assert event.detail["LabelingJobStatus"] == "Completed"
    assert event.resources[0].rsplit("/", 1)[-1].startswith("loupe-")
