"""EventBridge delivers the whole account's events: other pipelines', labeling jobs', package groups' and alarms'
state changes (the AWS-published samples in events/aws_*.json) must neither reach Loupe's handlers through the
template's rules nor, if a broader rule ever delivers them, fail there and end in the dead-letter queue."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from support.waiting import wait_until

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[3] / "events"

# each AWS-published sample and the function whose rule listens to its detail-type
FOREIGN = {
    "aws_s3_object_created.json": "IngestImageFunction",
    "aws_labeling_job_state_change.json": "LabelingCallbackFunction",
    "aws_pipeline_execution_status_change.json": "PipelineEventsFunction",
    "aws_model_package_state_change.json": "ModelPackageEventsFunction",
    "aws_alarm_state_change.json": "LabelingTriggerFunction",
}


def _sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def _emit(local_aws, event: dict) -> None:
    local_aws.emit_event(event["source"], event["detail-type"], event["detail"], event["resources"])


@pytest.fixture(scope="module")
def loupe_rules(local_aws) -> dict[str, str]:
    """Event patterns of the template's rules, by rule name (schedules have none)."""
    ev = local_aws.client("events")
    out = {}
    for res in local_aws.resources.values():
        if res.type != "AWS::Events::Rule":
            continue
        pattern = ev.describe_rule(Name=res.ref).get("EventPattern")
        if pattern:
            out[res.ref] = pattern
    assert out, "the template's EventBridge rules should be provisioned"
    return out


@pytest.fixture(scope="module")
def matched(local_aws, loupe_rules):
    """A queue that receives, through moto's own pattern matching, what each of Loupe's rules matches, plus a
    sentinel: once the sentinel (put last) is in the queue, every earlier event has been matched or not."""
    sqs, ev = local_aws.client("sqs"), local_aws.client("events")
    tag = uuid.uuid4().hex[:8]
    url = sqs.create_queue(QueueName=f"test-foreign-{tag}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    copies = {f"test-copy-{tag}-{i}": pattern for i, pattern in enumerate(loupe_rules.values())}
    copies[f"test-sentinel-{tag}"] = json.dumps({"source": ["loupe.test"], "detail": {"tag": [tag]}})
    rule_arns = []
    for name, pattern in copies.items():
        rule_arns.append(ev.put_rule(Name=name, EventPattern=pattern)["RuleArn"])
        ev.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    # EventBridge sends to a queue only where the queue's policy lets it (EventBridge user guide, "Using
    # resource-based policies for Amazon EventBridge" > "Amazon SQS permissions"); the local AWS enforces it
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})

    def drain_after(events: list[dict]) -> list[dict]:
        for event in events:
            _emit(local_aws, event)
        local_aws.emit_event("loupe.test", "Sentinel", {"tag": tag})
        seen: list[dict] = []

        def sentinel_arrived() -> bool:
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                seen.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            return any(e.get("source") == "loupe.test" and e["detail"].get("tag") == tag for e in seen)

        assert wait_until(sentinel_arrived, timeout=30), "the sentinel event never reached the queue"
        return seen

    yield drain_after
    for name in copies:
        ev.remove_targets(Rule=name, Ids=["q"])
        ev.delete_rule(Name=name)
    sqs.delete_queue(QueueUrl=url)


def test_no_loupe_rule_matches_the_aws_published_foreign_events(matched):
    foreign = [_sample(name) for name in FOREIGN]
    seen = matched(foreign)
    leaked = [
        e["detail-type"] for e in seen if any(set(e.get("resources", [])) == set(f["resources"]) for f in foreign)
    ]
    assert leaked == [], f"Loupe's rules match foreign events: {leaked}"


def _loupe_shaped(local_aws, marker: str) -> dict[str, dict]:
    """Loupe's own events for the two rules this filtering narrowed, named as this local stack names its
    resources, each carrying ``marker``. Both are harmless to deliver: a job no execution waits for, and a
    pipeline execution that is still running."""
    region = local_aws.region
    account = local_aws.arn("LabelingStateMachine").split(":")[4]
    pipeline = f"arn:aws:sagemaker:{region}:{account}:pipeline/{local_aws.stack_name}-training"
    job = f"arn:aws:sagemaker:{region}:{account}:labeling-job/loupe-{marker}"
    labeling = _sample("aws_labeling_job_state_change.json")
    status = _sample("aws_pipeline_execution_status_change.json")
    return {
        "labeling job": {**labeling, "resources": [job], "detail": {"LabelingJobStatus": "InProgress"}},
        "pipeline": {
            **status,
            "resources": [pipeline, f"{pipeline}/execution/{marker}"],
            "detail": {
                **status["detail"],
                "currentPipelineExecutionStatus": "Executing",
                "pipelineArn": pipeline,
                "pipelineExecutionArn": f"{pipeline}/execution/{marker}",
            },
        },
    }


def test_loupes_own_events_still_match_its_rules(local_aws, matched):
    """The positive control: the narrowed patterns still let Loupe's own events through."""
    marker = uuid.uuid4().hex[:12]
    ours = _loupe_shaped(local_aws, marker)
    seen = matched(list(ours.values()))
    arrived = {e["detail-type"] for e in seen if marker in json.dumps(e)}
    assert arrived == {e["detail-type"] for e in ours.values()}


def test_a_foreign_pipeline_status_change_neither_errors_nor_dead_letters(local_aws, matched):
    event = _sample("aws_pipeline_execution_status_change.json")
    fn = local_aws.invoker.find(local_aws.physical("PipelineEventsFunction"))
    errors_before = fn.errors
    seen = matched([event])  # put on the local EventBridge, then wait until everything before the sentinel matched
    assert not [e for e in seen if e.get("resources") == event["resources"]]
    foreign_arn = event["detail"]["pipelineExecutionArn"]
    failures = [f for f in local_aws.router.failures if foreign_arn in json.dumps(f.get("event", {}), default=str)]
    assert failures == []
    sqs = local_aws.client("sqs")
    dlq = sqs.get_queue_url(QueueName=local_aws.physical("EventsDeadLetterQueue").rsplit("/", 1)[-1])["QueueUrl"]
    peeked = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    assert not [m for m in peeked if foreign_arn in m["Body"]]
    assert fn.errors == errors_before


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_each_handler_ignores_its_foreign_sample_without_error(local_aws, name):
    """As if a broader rule delivered it: the handler answers 'ignored' without an error (that it makes no AWS
    call on the way is checked in tests/unit/events)."""
    result = local_aws.invoke(FOREIGN[name], _sample(name))
    assert result["ignored"] is True, result
    assert "not Loupe's" in result["reason"]


def test_the_trigger_knows_the_drift_alarm_its_rule_listens_to(local_aws, loupe_rules):
    """DRIFT_ALARM_ARN (what the trigger accepts) is the deployed alarm's ARN, the one its state changes carry."""
    fn = local_aws.invoker.find(local_aws.physical("LabelingTriggerFunction"))
    alarm = local_aws.client("cloudwatch").describe_alarms(AlarmNames=[local_aws.physical("DriftAlarm")])
    arn = alarm["MetricAlarms"][0]["AlarmArn"]
    assert fn.environment["DRIFT_ALARM_ARN"] == arn
    assert any(arn in pattern for pattern in loupe_rules.values())
