from __future__ import annotations

from loupe import pipeline_events


class FakeSageMaker:
    def __init__(self, steps: list[dict]) -> None:
        self.steps = steps
        self.calls: list[str] = []

    def list_pipeline_execution_steps(self, PipelineExecutionArn: str) -> dict:  # noqa: N803 - boto3's name
        self.calls.append(PipelineExecutionArn)
        return {"PipelineExecutionSteps": self.steps}


DETAIL = {"pipelineExecutionArn": "arn:x/execution/abc", "pipelineExecutionDisplayName": "dataset-v2"}


def test_a_registered_package_is_named() -> None:
    steps = [
        {"StepName": "Gate", "StepStatus": "Succeeded", "Metadata": {"Condition": {"Outcome": "True"}}},
        {"StepName": "Register", "StepStatus": "Succeeded", "Metadata": {"RegisterModel": {"Arn": "arn:pkg/3"}}},
    ]
    summary = pipeline_events.summarize(FakeSageMaker(steps), {**DETAIL, "currentPipelineExecutionStatus": "Succeeded"})
    assert summary["registered_package"] == "arn:pkg/3" and not summary["gate_refused"]
    subject, text = pipeline_events.message(summary)
    assert "registered" in subject and "approve" in text


def test_a_refused_gate_says_why() -> None:
    reason = "Gate refused the model: test mAP50 0.31 must be >= MinTestMap50 0.5 and >= the champion's 0.62"
    steps = [
        {
            "StepName": "GateRefused",
            "StepStatus": "Failed",
            "FailureReason": reason,
            "Metadata": {"Fail": {"ErrorMessage": reason}},
        }
    ]
    summary = pipeline_events.summarize(FakeSageMaker(steps), {**DETAIL, "currentPipelineExecutionStatus": "Failed"})
    assert summary["gate_refused"] and "0.31" in summary["failure_reason"] and summary["registered_package"] is None
    subject, text = pipeline_events.message(summary)
    assert "refused" in subject and "Nothing was registered" in text


def test_a_refused_model_registered_for_a_person_is_named_and_not_counted_as_registered() -> None:
    reason = "Gate refused the model: test mAP50 0.006 must be >= MinTestMap50 0.5 ... Training: stopped early"
    steps = [
        {"StepName": "Gate", "StepStatus": "Succeeded", "Metadata": {"Condition": {"Outcome": "False"}}},
        {
            "StepName": "RegisterRefused-RegisterModel",
            "StepStatus": "Succeeded",
            "Metadata": {"RegisterModel": {"Arn": "arn:pkg/4"}},
        },
        {"StepName": "GateRefused", "StepStatus": "Failed", "FailureReason": reason, "Metadata": {"Fail": {}}},
    ]
    summary = pipeline_events.summarize(FakeSageMaker(steps), {**DETAIL, "currentPipelineExecutionStatus": "Failed"})
    assert summary["gate_refused"] and summary["refused_package"] == "arn:pkg/4"
    assert summary["registered_package"] is None
    assert pipeline_events.metric_name(summary) == "GateRefusals"
    subject, text = pipeline_events.message(summary)
    assert "refused" in subject and "stopped early" in text
    assert "registered as arn:pkg/4 (PendingManualApproval)" in text and "unless a person approves it" in text


def test_running_executions_are_not_reported() -> None:
    fake = FakeSageMaker([])
    summary = pipeline_events.summarize(fake, {**DETAIL, "currentPipelineExecutionStatus": "Executing"})
    assert summary["status"] == "Executing" and fake.calls == []


def test_a_failed_step_that_is_not_the_gate_is_a_failure() -> None:
    steps = [{"StepName": "Train", "StepStatus": "Failed", "FailureReason": "loss is NaN at epoch 3", "Metadata": {}}]
    summary = pipeline_events.summarize(FakeSageMaker(steps), {**DETAIL, "currentPipelineExecutionStatus": "Failed"})
    assert not summary["gate_refused"] and "NaN" in summary["failure_reason"]
    subject, _ = pipeline_events.message(summary)
    assert "failed" in subject
