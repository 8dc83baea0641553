"""Every EventBridge-shaped sample in events/ through its real ``lambda_handler``: Loupe's events are handled,
the account's other resources' events (the AWS-published samples, events/aws_*.json) are ignored with one
``ignored: ...`` log line and no AWS call, and a malformed Loupe event fails with a clear validation error."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from loupe import eventbridge
from loupe.labeling import groundtruth, release, trigger
from loupe.labeling.config import LabelingError

REPO = Path(__file__).resolve().parents[3]
EVENTS = REPO / "events"

DRIFT_ALARM = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:loupe-DriftAlarm-1A2B3C4D5E6F"
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - moto's dummy credentials
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "loupe",
    "POWERTOOLS_METRICS_NAMESPACE": "Loupe",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "RAW_BUCKET": "loupe-rawbucket-1a2b3c4d",
    "ARTIFACT_BUCKET": "loupe-artifactbucket-1a2b3c4d",
    "LEDGER_TABLE": "loupe-ledger",
    "IDEMPOTENCY_TABLE": "loupe-idempotency",
    "DEPLOYMENTS_TABLE": "loupe-deployments",
    "NOTIFY_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:loupe-notify",
    "LABELING_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:loupe-labeling",
    "EDGE_DEPLOYMENT_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:loupe-edge",
    "TRAINING_PIPELINE_NAME": "loupe-training",
    "MODEL_PACKAGE_GROUP": "loupe-models",
    "THING_GROUP_NAME": "loupe-edge-fleet",
    "DRIFT_ALARM_ARN": DRIFT_ALARM,
}

# every EventBridge-shaped file in events/: (handler, expected outcome)
SAMPLES = {
    "ingest_image.json": ("ingest_image", "handled"),
    "aws_s3_object_created.json": ("ingest_image", "ignored"),
    "labeling_trigger.json": ("labeling_trigger", "handled"),
    "labeling_trigger_drift_alarm.json": ("labeling_trigger", "handled"),
    "aws_alarm_state_change.json": ("labeling_trigger", "ignored"),
    "labeling_callback.json": ("labeling_callback", "handled"),
    "aws_labeling_job_state_change.json": ("labeling_callback", "ignored"),
    "pipeline_events.json": ("pipeline_events", "handled"),
    "aws_pipeline_execution_status_change.json": ("pipeline_events", "ignored"),
    "model_package_events.json": ("model_package_events", "handled"),
    "aws_model_package_state_change.json": ("model_package_events", "ignored"),
}


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


class Untouchable:
    """Stands in for an AWS client or store that an ignored event must never reach."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"an ignored event reached {self._what}.{name}")


class Recorder:
    """A fake AWS client: records calls, answers from ``replies``."""

    def __init__(self, **replies: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._replies = replies

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs or {"args": args}))
            return self._replies.get(name, {})

        return call


CONTEXT = SimpleNamespace(
    function_name="loupe-test",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:loupe-test",
    aws_request_id="00000000-0000-0000-0000-000000000000",
    get_remaining_time_in_millis=lambda: 60_000,
)


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)

    def _load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"test_fn_{name}", REPO / "functions" / name / "app.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return _load


def isolate(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AWS client, store and AWS-calling function of a handler module made untouchable."""
    for attr in ("s3", "events", "sfn", "sagemaker", "sns", "ledger", "aws"):
        if hasattr(module, attr):
            monkeypatch.setattr(module, attr, Untouchable(attr))
    if hasattr(module, "clients"):  # a holder of clients made on first use: each one untouchable instead
        names = ("s3", "sagemaker", "featurestore", "sfn", "ledger", "app_store")
        fake(module.clients, monkeypatch, **{name: Untouchable(name) for name in names})
    if hasattr(module, "process"):
        monkeypatch.setattr(module, "process", Untouchable("process"))
    if hasattr(module, "boto3"):
        monkeypatch.setattr(module, "boto3", Untouchable("boto3"))
    if hasattr(module, "trigger"):
        monkeypatch.setattr(trigger, "run_trigger", Untouchable("trigger.run_trigger"))
        monkeypatch.setattr(release, "sweep_stale_claims", Untouchable("release.sweep_stale_claims"))


def fake(holder: Any, monkeypatch: pytest.MonkeyPatch, **attrs: Any) -> None:
    """Set a client holder's first-use attributes (``functools.cached_property``) without creating the real ones:
    the instance's own dict is where a cached property keeps its value."""
    for name, value in attrs.items():
        monkeypatch.setitem(vars(holder), name, value)


def ignored_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("ignored:")]


def test_every_eventbridge_sample_is_covered() -> None:
    shaped = {p.name for p in EVENTS.glob("*.json") if "detail-type" in json.loads(p.read_text())}
    assert shaped == set(SAMPLES), "a sample event in events/ has no handled-or-ignored expectation"
    published = {p.name for p in EVENTS.glob("aws_*.json")}
    assert published and all(SAMPLES[name][1] == "ignored" for name in published)


@pytest.mark.parametrize("name", sorted(n for n, (_, outcome) in SAMPLES.items() if outcome == "ignored"))
def test_foreign_samples_are_ignored_with_one_log_line_and_no_aws_call(name, load, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    module = load(SAMPLES[name][0])
    isolate(module, monkeypatch)
    result = module.lambda_handler(sample(name), CONTEXT)
    assert result["ignored"] is True
    assert "not Loupe's" in result["reason"]
    lines = ignored_lines(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.INFO and result["reason"] in lines[0].getMessage()


# ------------------------------------------------------------------ Loupe's own samples are handled
def test_ingest_handles_an_object_under_raw(load, monkeypatch) -> None:
    module = load("ingest_image")
    isolate(module, monkeypatch)
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(module, "process", lambda obj: seen.append(obj) or {"status": "recorded"})
    assert module.lambda_handler(sample("ingest_image.json"), CONTEXT) == {"status": "recorded"}
    event = sample("ingest_image.json")["detail"]
    assert seen == [
        {
            "bucket": ENV["RAW_BUCKET"],
            "key": event["object"]["key"],
            "version_id": event["object"]["version-id"],
            "etag": None,
        }
    ]


def test_ingest_ignores_loupe_bucket_objects_outside_raw(load, monkeypatch, caplog) -> None:
    module = load("ingest_image")
    isolate(module, monkeypatch)
    event = sample("ingest_image.json")
    event["detail"]["object"]["key"] = "quarantine/raw/line-3/tag.jpg"
    result = module.lambda_handler(event, CONTEXT)
    assert result["ignored"] is True and "quarantine/raw/line-3/tag.jpg" in result["reason"]
    assert len(ignored_lines(caplog)) == 1


@pytest.mark.parametrize(
    ("name", "reason", "requested"),
    [
        ("labeling_trigger.json", "threshold", None),
        ("labeling_trigger_drift_alarm.json", "drift", None),
        ("labeling_trigger_manual.json", "manual", sample("labeling_trigger_manual.json")["sha256"]),
    ],
)
def test_trigger_handles_loupe_events(name, reason, requested, load, monkeypatch) -> None:
    module = load("labeling_trigger")
    isolate(module, monkeypatch)
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(release, "sweep_stale_claims", lambda *a: {})
    monkeypatch.setattr(trigger, "run_trigger", lambda *a, **kw: runs.append(kw) or {"started": False})
    assert module.lambda_handler(sample(name), CONTEXT) == {"started": False}
    assert [(r["reason"], r["requested"] or None) for r in runs] == [(reason, requested)]


def test_trigger_ignores_the_drift_alarm_going_back_to_ok(load, monkeypatch) -> None:
    module = load("labeling_trigger")
    isolate(module, monkeypatch)
    event = sample("labeling_trigger_drift_alarm.json")
    event["detail"]["state"], event["detail"]["previousState"] = (
        event["detail"]["previousState"],
        event["detail"]["state"],
    )
    result = module.lambda_handler(event, CONTEXT)
    assert result == {"ignored": True, "reason": "alarm loupe-DriftAlarm-1A2B3C4D5E6F is OK, not ALARM"}


def test_trigger_refuses_an_event_of_no_known_kind(load, monkeypatch) -> None:
    module = load("labeling_trigger")
    isolate(module, monkeypatch)
    event = {**sample("labeling_trigger.json"), "source": "someone.else", "detail-type": "Order Placed"}
    with pytest.raises(ValueError, match="not a labeling trigger event.*Order Placed"):
        module.lambda_handler(event, CONTEXT)


def test_an_alarm_event_without_the_drift_alarm_configured_is_an_error() -> None:
    event = trigger.TriggerEvent.model_validate(sample("labeling_trigger_drift_alarm.json"))
    with pytest.raises(LabelingError, match="DRIFT_ALARM_ARN"):
        trigger.trigger_reason(event, drift_alarm_arn=None)


class FakeLedger:
    def __init__(self, jobs: dict[str, dict[str, Any]]) -> None:
        self.jobs = jobs

    def get_job(self, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)


def test_callback_resumes_the_execution_waiting_on_a_loupe_job(load, monkeypatch) -> None:
    module = load("labeling_callback")
    event = sample("labeling_callback.json")
    name = event["resources"][0].rsplit("/", 1)[-1]
    sfn = Recorder()
    monkeypatch.setattr(module, "sfn", sfn)
    monkeypatch.setattr(module, "ledger", FakeLedger({name: {"task_token": "token-1"}}))
    assert module.lambda_handler(event, CONTEXT) == {"job_name": name, "status": "Completed", "resumed": True}
    assert [(c, kw["taskToken"]) for c, kw in sfn.calls] == [("send_task_success", "token-1")]


def test_callback_ignores_a_loupe_named_job_no_execution_of_this_stack_waits_for(load, monkeypatch, caplog) -> None:
    module = load("labeling_callback")
    monkeypatch.setattr(module, "sfn", Untouchable("sfn"))
    monkeypatch.setattr(module, "ledger", FakeLedger({}))
    result = module.lambda_handler(sample("labeling_callback.json"), CONTEXT)
    assert result["ignored"] is True and "no execution of this stack waits" in result["reason"]
    assert len(ignored_lines(caplog)) == 1


def test_callback_refuses_an_event_that_names_no_labeling_job(load, monkeypatch) -> None:
    module = load("labeling_callback")
    isolate(module, monkeypatch)
    event = {**sample("labeling_callback.json"), "resources": []}
    with pytest.raises(ValidationError, match="labeling-job ARN"):
        module.lambda_handler(event, CONTEXT)


def test_pipeline_outcome_of_loupes_pipeline_is_announced(load, monkeypatch) -> None:
    module = load("pipeline_events")
    steps = [{"StepName": "Train", "StepStatus": "Failed", "FailureReason": "loss is NaN", "Metadata": {}}]
    sagemaker = Recorder(list_pipeline_execution_steps={"PipelineExecutionSteps": steps})
    sns = Recorder()
    monkeypatch.setattr(module, "sagemaker", sagemaker)
    monkeypatch.setattr(module, "sns", sns)
    event = sample("pipeline_events.json")
    summary = module.lambda_handler(event, CONTEXT)
    assert summary["status"] == "Failed" and "loss is NaN" in summary["failure_reason"]
    assert sagemaker.calls == [
        ("list_pipeline_execution_steps", {"PipelineExecutionArn": event["detail"]["pipelineExecutionArn"]})
    ]
    assert [c for c, _ in sns.calls] == ["publish"] and "dataset-v2" in sns.calls[0][1]["Subject"]


@pytest.mark.parametrize(
    ("arn", "ours"),
    [
        ("arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training", True),
        ("arn:aws:sagemaker:us-east-1:123456789012:pipeline/LOUPE-Training", True),  # ARNs carry names lowercased
        ("arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training-staging", False),
        ("arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-staging-training", False),
    ],
)
def test_only_the_stack_pipeline_is_loupes(arn, ours) -> None:
    event = sample("pipeline_events.json")
    event["detail"]["pipelineArn"] = arn
    event["detail"]["pipelineExecutionArn"] = arn + "/execution/k3q9x2m1v7zb"
    if ours:
        assert eventbridge.pipeline_status_change(event, "loupe-training").detail.pipeline_arn == arn
    else:
        with pytest.raises(eventbridge.Ignored, match="not Loupe's"):
            eventbridge.pipeline_status_change(event, "loupe-training")


def test_pipeline_event_with_an_unknown_status_is_refused(load, monkeypatch) -> None:
    module = load("pipeline_events")
    isolate(module, monkeypatch)
    event = sample("pipeline_events.json")
    event["detail"]["currentPipelineExecutionStatus"] = "Exploded"
    with pytest.raises(ValidationError, match="currentPipelineExecutionStatus"):
        module.lambda_handler(event, CONTEXT)


def test_package_of_loupes_group_goes_to_the_deployment_logic(load, monkeypatch) -> None:
    module = load("model_package_events")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        module, "aws", SimpleNamespace(sagemaker=Recorder(), stepfunctions=Recorder(), store=Recorder())
    )

    def on_package_event(detail: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        calls.append({"detail": detail, "group": kwargs["group_name"]})
        return {"action": "started", "execution_name": "deploy-v3-x"}

    monkeypatch.setattr(module.routing, "on_package_event", on_package_event)
    event = sample("model_package_events.json")
    assert module.lambda_handler(event, CONTEXT) == {"action": "started", "execution_name": "deploy-v3-x"}
    assert calls == [{"detail": event["detail"], "group": "loupe-models"}]


def test_package_event_without_an_approval_status_is_refused(load, monkeypatch) -> None:
    module = load("model_package_events")
    isolate(module, monkeypatch)
    event = copy.deepcopy(sample("model_package_events.json"))
    del event["detail"]["ModelApprovalStatus"]
    with pytest.raises(ValidationError, match="ModelApprovalStatus"):
        module.lambda_handler(event, CONTEXT)


def test_loupe_labeling_job_names_carry_the_prefix_the_rule_and_handler_filter_on() -> None:
    for kind in ("", "verify"):
        assert groundtruth.job_name_for("20261121t221500-1a2b3c4d", "token", kind).startswith(
            eventbridge.LABELING_JOB_PREFIX
        )


# ------------------------------------------------------------------ the state machine's task envelope
class ClaimedLedger:
    """A ledger whose images are all claimed by the sample's claim."""

    def __init__(self, claim_id: str) -> None:
        self.claim_id = claim_id

    def get_many(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        return {
            sha: {"sha256": sha, "status": "claimed", "claim_id": self.claim_id, "image_uri": f"s3://raw/{sha}.jpg"}
            for sha in hashes
        }


def test_labeling_task_envelope_runs_its_task(load, monkeypatch) -> None:
    module = load("labeling_tasks")
    event = sample("labeling_tasks.json")
    s3 = Recorder()
    ledger = ClaimedLedger(event["input"]["claim_id"])
    isolate(module, monkeypatch)
    fake(module.clients, monkeypatch, s3=s3, ledger=ledger)
    result = module.lambda_handler(event, CONTEXT)
    assert result["count"] == 2 and result["images"] == event["input"]["images"]
    keys = [kw["Key"] for call, kw in s3.calls if call == "put_object"]
    assert f"labeling/{event['input']['claim_id']}/input.manifest" in keys


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"task": "make_coffee"}, "unknown task 'make_coffee'"),
        ({"task": "create_job"}, "waits for a task token"),
    ],
)
def test_a_task_envelope_that_cannot_run_fails_loudly(change, error, load, monkeypatch) -> None:
    from loupe.tasks import TaskError

    module = load("labeling_tasks")
    isolate(module, monkeypatch)
    with pytest.raises(TaskError, match=error):
        module.lambda_handler({**sample("labeling_tasks.json"), **change}, CONTEXT)


def test_aws_throttling_is_raised_under_the_name_the_state_machine_retries(load, monkeypatch) -> None:
    from botocore.exceptions import ClientError

    from loupe.labeling.config import ThrottlingException

    module = load("labeling_tasks")
    event = sample("labeling_tasks.json")

    class Throttled:
        def put_object(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "PutObject")

    ledger = ClaimedLedger(event["input"]["claim_id"])
    isolate(module, monkeypatch)
    fake(module.clients, monkeypatch, s3=Throttled(), ledger=ledger)
    with pytest.raises(ThrottlingException, match="SlowDown"):
        module.lambda_handler(event, CONTEXT)


# ------------------------------------------------------------------ IoT rule payloads
def test_feedback_records_the_announced_frame(load, monkeypatch) -> None:
    from loupe import ingest

    event = sample("feedback.json")
    monkeypatch.setenv("RAW_BUCKET", event["bucket"])
    module = load("feedback")
    s3 = Recorder()
    monkeypatch.setattr(module, "s3", s3)
    monkeypatch.setattr(module, "ledger", Untouchable("ledger"))
    seen: list[Any] = []

    def ingest_object(s3_: Any, ledger: Any, ref: Any, announce: Any = None) -> Any:
        seen.append(ref)
        return ingest.IngestResult("ab" * 32, "unlabeled", True, ref.key)

    monkeypatch.setattr(ingest, "ingest_object", ingest_object)
    result = module.lambda_handler(event, CONTEXT)
    assert result["status"] == "unlabeled" and result["thing"] == event["source_thing"]
    assert [(r.bucket, r.key) for r in seen] == [(event["bucket"], event["key"])]
    assert [c for c, _ in s3.calls] == ["head_object"]


def test_feedback_keeps_an_announcement_for_another_bucket_as_rejected(load, monkeypatch) -> None:
    module = load("feedback")
    s3 = Recorder()
    monkeypatch.setattr(module, "s3", s3)
    monkeypatch.setattr(module, "ledger", Untouchable("ledger"))
    result = module.lambda_handler(sample("feedback.json"), CONTEXT)
    assert "not Loupe's raw bucket" in result["rejected"]
    assert [(c, kw["Bucket"]) for c, kw in s3.calls] == [("put_object", ENV["RAW_BUCKET"])]


class FleetIoT:
    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = groups

    def get_paginator(self, name: str) -> Any:
        assert name == "list_thing_groups_for_thing"
        return SimpleNamespace(
            paginate=lambda thingName: [{"thingGroups": [{"groupName": g} for g in self.groups.get(thingName, [])]}]
        )


@pytest.mark.parametrize("member", [True, False])
def test_edge_health_of_a_fleet_device_becomes_metrics(member, load, monkeypatch) -> None:
    module = load("edge_health")
    event = sample("edge_health.json")
    groups = {event["source_thing"]: [ENV["THING_GROUP_NAME"]]} if member else {}
    monkeypatch.setattr(module, "fleet", module.FleetMembership(FleetIoT(groups), ENV["THING_GROUP_NAME"]))
    s3 = Recorder()
    monkeypatch.setattr(module, "s3", s3)
    served: list[Any] = []
    monkeypatch.setattr(module.fleet_serving, "record_health", lambda health: served.append(health.thing))
    result = module.lambda_handler(event, CONTEXT)
    if member:
        assert result["thing"] == event["thing"] and result["metrics"]["UncertainFrameShare"] == 0.1892
        assert served == [event["thing"]] and s3.calls == []
    else:
        assert "is not in thing group" in result["rejected"] and served == []
        assert [c for c, _ in s3.calls] == ["put_object"]


def test_callback_for_a_token_that_no_longer_waits_resumes_nothing(load, monkeypatch, caplog) -> None:
    from botocore.exceptions import ClientError

    module = load("labeling_callback")
    event = sample("labeling_callback.json")
    name = event["resources"][0].rsplit("/", 1)[-1]

    class GoneSfn:
        def send_task_success(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "timed out"}}, "SendTaskSuccess")

    monkeypatch.setattr(module, "sfn", GoneSfn())
    monkeypatch.setattr(module, "ledger", FakeLedger({name: {"task_token": "token-1"}}))
    assert module.lambda_handler(event, CONTEXT) == {"job_name": name, "status": "Completed", "resumed": False}
    assert any(r.getMessage() == "task token no longer waits" for r in caplog.records)
