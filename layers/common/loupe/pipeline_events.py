"""Outcome of a training pipeline execution, told to people: registered package, refused gate, or failure.

Driven by "SageMaker Model Building Pipeline Execution Status Change"; reads the execution's steps to say *why*
(the gate's Fail step carries the measured mAP50 against the threshold and the champion).
"""

from __future__ import annotations

from typing import Any, Protocol

from loupe import eventbridge
from loupe.settings import Settings

FINAL = {"Succeeded", "Failed", "Stopped"}
REFUSED_REGISTER_STEP = (
    "RegisterRefused"  # training/pipeline.py's step (its model step is RegisterRefused-RegisterModel)
)


class SageMaker(Protocol):
    def list_pipeline_execution_steps(self, *, PipelineExecutionArn: str) -> dict[str, Any]: ...  # noqa: N803


class Sns(Protocol):
    def publish(self, *, TopicArn: str, Subject: str, Message: str) -> dict[str, Any]: ...  # noqa: N803


def on_status_change(
    change: eventbridge.PipelineExecutionStatusChange, sagemaker: SageMaker, sns: Sns, settings: Settings
) -> dict[str, Any]:
    """The handler's one call: a final status of this stack's pipeline is told to people (SNS); returns the
    summary. :class:`loupe.eventbridge.Ignored` for the account's other pipelines, before any AWS call."""
    eventbridge.check_pipeline(change, settings.training_pipeline_name or "")
    summary = summarize(sagemaker, change.detail.model_dump(by_alias=True))
    if summary["status"] in FINAL:
        subject, text = message(summary)
        sns.publish(TopicArn=settings.notify_topic_arn or "", Subject=subject[:100], Message=text)
    return summary


def metric_name(summary: dict[str, Any]) -> str | None:
    """The metric a final outcome counts in (None while the execution runs)."""
    if summary["status"] not in FINAL:
        return None
    if summary["registered_package"]:
        return "ModelsRegistered"
    return "GateRefusals" if summary["gate_refused"] else "PipelineFailures"


def summarize(sagemaker: SageMaker, detail: dict[str, Any]) -> dict[str, Any]:
    arn = detail.get("pipelineExecutionArn") or ""
    status = detail.get("currentPipelineExecutionStatus") or ""
    summary: dict[str, Any] = {
        "pipeline_execution_arn": arn,
        "status": status,
        "display_name": detail.get("pipelineExecutionDisplayName", ""),
        "registered_package": None,
        # a model the gate refused, registered PendingManualApproval for a person to look at (RegisterRefused step)
        "refused_package": None,
        "gate_refused": False,
        "failure_reason": "",
    }
    if status not in FINAL or not arn:
        return summary
    steps = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=arn).get("PipelineExecutionSteps", [])
    for step in steps:
        meta = step.get("Metadata") or {}
        if "RegisterModel" in meta and step.get("StepStatus") == "Succeeded":
            refused = str(step.get("StepName") or "").startswith(REFUSED_REGISTER_STEP)
            summary["refused_package" if refused else "registered_package"] = meta["RegisterModel"].get("Arn")
        if step.get("StepStatus") == "Failed":
            reason = step.get("FailureReason") or (meta.get("Fail") or {}).get("ErrorMessage") or ""
            summary["failure_reason"] = summary["failure_reason"] or f"{step.get('StepName')}: {reason}"
            if "Fail" in meta or "gate" in reason.lower():
                summary["gate_refused"] = True
    if status != "Succeeded" and not summary["failure_reason"]:
        summary["failure_reason"] = detail.get("failureReason") or f"pipeline execution {status.lower()}"
    return summary


def message(summary: dict[str, Any]) -> tuple[str, str]:
    name = summary["display_name"] or summary["pipeline_execution_arn"].rsplit("/", 1)[-1]
    if summary["status"] == "Succeeded" and summary["registered_package"]:
        return (
            f"Loupe: new model registered ({name})",
            f"Training {name} passed the gate and registered {summary['registered_package']}.\n"
            "Review and approve it in SageMaker Studio (Models > Registered models) to deploy it to the fleet.",
        )
    if summary["gate_refused"]:
        kept = (
            f"The refused model is registered as {summary['refused_package']} (PendingManualApproval): nothing "
            "deploys it unless a person approves it after looking at the reason above."
            if summary["refused_package"]
            else "Nothing was registered."
        )
        return f"Loupe: model refused by the gate ({name})", f"{summary['failure_reason']}\n{kept}"
    return (
        f"Loupe: training {summary['status'].lower()} ({name})",
        f"{summary['failure_reason']}\nNothing was registered; the deployed model stays.\n"
        f"{summary['pipeline_execution_arn']}",
    )
