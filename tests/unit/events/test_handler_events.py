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

from loupe import eventbridge, labeling

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
    for attr in ("s3", "events", "sfn", "sagemaker", "sns", "ledger"):
        if hasattr(module, attr):
            monkeypatch.setattr(module, attr, Untouchable(attr))
    if hasattr(module, "process"):
        monkeypatch.setattr(module, "process", Untouchable("process"))
    if hasattr(module, "boto3"):
        monkeypatch.setattr(module, "boto3", Untouchable("boto3"))
    if hasattr(module, "labeling"):
        for fn in ("run_trigger", "sweep_stale_claims"):
            monkeypatch.setattr(module.labeling, fn, Untouchable(f"labeling.{fn}"))


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
    monkeypatch.setattr(module.labeling, "sweep_stale_claims", lambda *a: {})
    monkeypatch.setattr(module.labeling, "run_trigger", lambda *a, **kw: runs.append(kw) or {"started": False})
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
    with pytest.raises(labeling.LabelingError, match="DRIFT_ALARM_ARN"):
        labeling.trigger_reason(sample("labeling_trigger_drift_alarm.json"), drift_alarm_arn=None)


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
    monkeypatch.setattr(module, "boto3", Recorder(client=None, resource=Recorder()))

    def on_package_event(detail: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        calls.append({"detail": detail, "group": kwargs["group_name"]})
        return {"action": "started", "execution_name": "deploy-v3-x"}

    monkeypatch.setattr(module.deployment, "on_package_event", on_package_event)
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
        assert labeling.job_name_for("20261121t221500-1a2b3c4d", "token", kind).startswith(
            eventbridge.LABELING_JOB_PREFIX
        )
