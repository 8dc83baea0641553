"""The IoT rules' handlers with their sample payloads (events/feedback.json, events/edge_health.json) through the real
``lambda_handler``, against moto: the announced frame is ingested into the ledger, the health message becomes
metrics and "device X serves model V" in the deployments table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support import image_samples as samples

from loupe import fleet_serving
from loupe_local.template import load_yaml

REPO = Path(__file__).resolve().parents[3]
EVENTS = REPO / "events"
LEDGER, DEPLOYMENTS = "loupe-ledger", "loupe-deployments"
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto's dummy credentials
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "loupe",
    "POWERTOOLS_METRICS_NAMESPACE": "Loupe",
    "LEDGER_TABLE": LEDGER,
    "DEPLOYMENTS_TABLE": DEPLOYMENTS,
    "THING_GROUP_NAME": "loupe-edge-fleet",
}
CONTEXT = SimpleNamespace(
    function_name="loupe-iot",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:loupe-iot",
    aws_request_id="00000000-0000-0000-0000-000000000000",
    get_remaining_time_in_millis=lambda: 60_000,
)


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def create_table(logical_id: str, name: str) -> None:
    """The table as template.yaml declares it (keys and indexes)."""
    props = load_yaml(REPO / "template.yaml")["Resources"][logical_id]["Properties"]
    keep = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
    boto3.client("dynamodb").create_table(TableName=name, **{k: props[k] for k in keep if k in props})


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    raw_bucket = sample("feedback.json")["bucket"]
    for key, value in {**ENV, "RAW_BUCKET": raw_bucket}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(fleet_serving, "_STORE", None)  # the warm container's store: a new one per test
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=raw_bucket)
        create_table("LedgerTable", LEDGER)
        create_table("DeploymentsTable", DEPLOYMENTS)
        yield SimpleNamespace(raw_bucket=raw_bucket)
    monkeypatch.setattr(fleet_serving, "_STORE", None)


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"test_iot_{name}", REPO / "functions" / name / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_feedback_sample_ingests_the_announced_frame(aws: Any) -> None:
    event = sample("feedback.json")
    image = samples.jpeg(seed=417)
    boto3.client("s3").put_object(Bucket=event["bucket"], Key=event["key"], Body=image)
    result = load("feedback").lambda_handler(event, CONTEXT)
    assert "rejected" not in result, result
    assert result["thing"] == event["thing"] and result["model_version"] == event["model_version"]
    entries = boto3.resource("dynamodb").Table(LEDGER).scan()["Items"]
    uri = f"s3://{event['bucket']}/{event['key']}"
    assert [e["status"] for e in entries if uri in (e.get("source_keys") or ())] == ["unlabeled"]


def test_the_feedback_sample_announced_before_its_upload_is_rejected_and_kept(aws: Any) -> None:
    result = load("feedback").lambda_handler(sample("feedback.json"), CONTEXT)
    assert "does not exist" in result["rejected"]
    assert boto3.client("s3").head_object(Bucket=aws.raw_bucket, Key=result["record"])


def test_the_health_sample_becomes_metrics_and_what_the_device_serves(aws: Any, capsys: Any) -> None:
    event = sample("edge_health.json")
    iot = boto3.client("iot")
    iot.create_thing_group(thingGroupName=ENV["THING_GROUP_NAME"])
    iot.create_thing(thingName=event["thing"])
    iot.add_thing_to_thing_group(thingGroupName=ENV["THING_GROUP_NAME"], thingName=event["thing"])
    result = load("edge_health").lambda_handler(event, CONTEXT)
    assert result["thing"] == event["thing"], result
    assert result["metrics"]["UncertainFrameShare"] == pytest.approx(event["uncertain_share"])
    emf = capsys.readouterr().out
    assert "UncertainFrameShare" in emf  # EMF on stdout, as CloudWatch reads it
    assert '"candidate_version":"1.0.3"' in emf and "ShadowVerdictAgreement" in emf
    items = boto3.resource("dynamodb").Table(DEPLOYMENTS).scan()["Items"]
    assert any(event["model_version"] in json.dumps(item, default=str) for item in items), items
    # the sample carries a shadow window: per-candidate metrics and the candidate's totals in the table
    assert result["shadow"]["recorded"] is True
    assert result["shadow"]["metrics"]["ShadowVerdictAgreement"] == pytest.approx(14 / 15)
    totals = fleet_serving.DeploymentsStore.from_name(DEPLOYMENTS).shadow_totals(event["shadow"]["model_version"])
    assert totals["devices"][event["thing"]]["frames"] == event["shadow"]["frames"]


def test_the_health_sample_of_a_device_outside_the_fleet_is_rejected(aws: Any) -> None:
    boto3.client("iot").create_thing_group(thingGroupName=ENV["THING_GROUP_NAME"])
    result = load("edge_health").lambda_handler(sample("edge_health.json"), CONTEXT)
    assert result["rejected"] and result["record"]


def test_a_feedback_frame_whose_metadata_names_another_device_is_recorded_as_rejected(aws: Any) -> None:
    event = sample("feedback.json")  # a valid announcement by the thing of the topic, for its own key
    image = samples.jpeg(seed=418)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=event["bucket"], Key=event["key"], Body=image, Metadata={"device": "loupe-line9-cam9"})
    result = load("feedback").lambda_handler(event, CONTEXT)
    assert result["status"] == "rejected" and "claims device 'loupe-line9-cam9'" in result["reason"]
    uri = f"s3://{event['bucket']}/{event['key']}"
    (entry,) = [e for e in boto3.resource("dynamodb").Table(LEDGER).scan()["Items"] if uri in e["source_keys"]]
    assert entry["status"] == "rejected" and entry["reason_code"] == "origin-mismatch"
    assert entry["origin"]["device"] == event["source_thing"]  # the thing of the key and topic, not the claim
    assert s3.head_object(Bucket=event["bucket"], Key=result["quarantined"])


@pytest.mark.parametrize("literal", ["NaN", "Infinity"])
def test_a_health_message_with_a_non_finite_number_is_recorded_as_rejected(aws: Any, literal: str) -> None:
    event = sample("edge_health.json")
    iot = boto3.client("iot")
    iot.create_thing_group(thingGroupName=ENV["THING_GROUP_NAME"])
    iot.create_thing(thingName=event["thing"])
    iot.add_thing_to_thing_group(thingGroupName=ENV["THING_GROUP_NAME"], thingName=event["thing"])
    # the payload as Lambda's runtime decodes it: Python's json takes the NaN/Infinity literals
    event = json.loads(json.dumps(event).replace('"fps": ', f'"fps": {literal}, "was_fps": ', 1))
    result = load("edge_health").lambda_handler(event, CONTEXT)
    assert result["rejected"] == "invalid health message: fps: not a finite number (NaN and Infinity are refused)"
    text = boto3.client("s3").get_object(Bucket=aws.raw_bucket, Key=result["record"])["Body"].read()
    record = json.loads(text, parse_constant=lambda name: pytest.fail(f"record is not standard JSON: {name}"))
    assert record["reason"] == result["rejected"] and record["thing"] == event["source_thing"]
    assert record["message"]["fps"] == literal  # kept, as the name of what was sent
