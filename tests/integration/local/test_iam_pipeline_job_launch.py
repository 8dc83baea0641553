"""A pipeline creates its steps' jobs as its RoleArn (issue 19): SageMaker authorizes sagemaker:Create*Job on the
job's ARN and iam:PassRole on the job's RoleArn (iam:PassedToService = sagemaker.amazonaws.com) against the
pipeline's role. Locally the stand-in starts a step without an HTTP call; the check is made and recorded all the
same, a denial is a would-deny in audit and fails the step with SageMaker's FailureReason in enforce."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.iam_gate import usage, usage_lines
from support.waiting import wait_for

from loupe_local.standins.pipelines.interpreter import Execution, StepFailed, StepRecord
from loupe_local.standins.pipelines.jobs import JobRunner

pytestmark = pytest.mark.integration

# a training container of the test's own that only leaves a mark that it ran
PROBE = 'import os, pathlib\npathlib.Path(os.environ["SM_MODEL_DIR"], "ran.txt").write_text("ran")\n'
# a role of another team's: the stack's pipeline role may pass only itself (SageMakerPassSelfPolicy)
OTHER_ROLE = "arn:aws:iam::123456789012:role/another-teams-training-role"


@pytest.fixture
def iam_as(local_aws: Any) -> Iterator[Any]:
    before = local_aws.iam_mode

    def switch(mode: str) -> Any:
        local_aws.set_iam(mode)
        return local_aws

    try:
        yield switch
    finally:
        local_aws.set_iam(before)


def probe_training(rt: Any, tmp_path: Path, job_role: str) -> tuple[Execution, Path, dict[str, Any]]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "probe.py").write_text(PROBE)
    execution_id = uuid.uuid4().hex[:12]
    ex = Execution(
        arn=f"arn:aws:sagemaker:{rt.region}:123456789012:pipeline/probe/execution/{execution_id}",
        pipeline_name="probe",
        pipeline_arn=f"arn:aws:sagemaker:{rt.region}:123456789012:pipeline/probe",
        display_name="probe",
        description="",
        parameters={},
        definition={},
        root=tmp_path / "execution",
        role_arn=rt.arn("SageMakerExecutionRole"),  # the pipeline's role creates the job
    )
    ex.root.mkdir()
    bucket = rt.physical("ArtifactBucket")
    args = {
        "RoleArn": job_role,  # the role the job runs with, passed to SageMaker
        "HyperParameters": {"sagemaker_program": "probe.py"},
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/pipeline/iam-launch-{execution_id}/out"},
    }
    return ex, code, args


def launches(rt: Any, seen: int, execution_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in usage(rt, seen)
        if r["operation"] == "CreateTrainingJob"
        and (r["action"] == "iam:PassRole" or any(execution_id in res for res in r["resources"]))
    ]


def test_a_step_whose_job_runs_with_the_pipelines_own_role_is_allowed_and_recorded(iam_as: Any, tmp_path) -> None:
    rt = iam_as("audit")
    role = rt.arn("SageMakerExecutionRole")
    session = rt.role_session(role)
    assert session is not None
    ex, code, args = probe_training(rt, tmp_path, role)
    seen = usage_lines(rt.state_dir)
    JobRunner(rt, code).training(ex, StepRecord(name="Train", type="Training"), args)
    mine = launches(rt, seen, ex.execution_id)
    job_arn = f"arn:aws:sagemaker:{rt.region}:123456789012:training-job/pipelines-{ex.execution_id}-train"
    assert {(r["action"], tuple(r["resources"]), r["decision"], r["principal"]) for r in mine} == {
        ("sagemaker:CreateTrainingJob", (job_arn,), "Allow", session.arn),
        ("iam:PassRole", (role,), "Allow", session.arn),
    }
    assert (ex.root / "Train" / "opt" / "ml" / "model" / "ran.txt").is_file()


@pytest.mark.iam_would_deny
def test_passing_a_role_the_pipeline_role_may_not_pass_is_a_would_deny_in_audit(iam_as: Any, tmp_path) -> None:
    rt = iam_as("audit")
    ex, code, args = probe_training(rt, tmp_path, OTHER_ROLE)
    seen = usage_lines(rt.state_dir)
    JobRunner(rt, code).training(ex, StepRecord(name="Train", type="Training"), args)  # audit: the step runs
    denied = [r for r in launches(rt, seen, ex.execution_id) if r["decision"] != "Allow"]
    assert [(r["action"], r["resources"], r["decision"]) for r in denied] == [
        ("iam:PassRole", [OTHER_ROLE], "ImplicitDeny")
    ]
    assert (ex.root / "Train" / "opt" / "ml" / "model" / "ran.txt").is_file()


@pytest.mark.iam_would_deny
def test_in_enforce_the_refused_pass_role_fails_the_step_before_any_job_runs(iam_as: Any, tmp_path) -> None:
    rt = iam_as("enforce")
    session = rt.role_session(rt.arn("SageMakerExecutionRole"))
    assert session is not None
    ex, code, args = probe_training(rt, tmp_path, OTHER_ROLE)
    with pytest.raises(StepFailed) as failed:
        JobRunner(rt, code).training(ex, StepRecord(name="Train", type="Training"), args)
    assert str(failed.value) == (
        "ClientError: Failed to invoke sagemaker:CreateTrainingJob. Error Details: "
        f"User: {session.arn} is not authorized to perform: iam:PassRole on resource: {OTHER_ROLE} "
        "because no identity-based policy allows the iam:PassRole action"
    )
    assert failed.value.exception_type is None  # not a failure a retry policy may retry
    assert not (ex.root / "Train").exists()  # refused before any data moved or a container started


@pytest.mark.iam_would_deny
def test_a_pipeline_execution_reports_the_refusal_as_its_steps_failure_reason(iam_as: Any) -> None:
    """Through the API: a pipeline of the test's own (the stack's role) whose processing step passes another role."""
    rt = iam_as("enforce")
    session = rt.role_session(rt.arn("SageMakerExecutionRole"))
    assert session is not None
    bucket = rt.physical("ArtifactBucket")
    step = {
        "Name": "Prepare",
        "Type": "Processing",
        "Arguments": {
            "RoleArn": OTHER_ROLE,
            "AppSpecification": {"ImageUri": "local", "ContainerEntrypoint": ["python3", "/opt/ml/code/job.py"]},
            "ProcessingResources": {
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 10}
            },
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "out",
                        "S3Output": {
                            "S3Uri": f"s3://{bucket}/pipeline/iam-launch/out",
                            "LocalPath": "/opt/ml/processing/out",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
        },
    }
    definition = {"Version": "2020-12-01", "Metadata": {}, "Parameters": [], "Steps": [step]}
    sm = rt.client("sagemaker")
    name = f"test-iam-launch-{uuid.uuid4().hex[:6]}"
    sm.create_pipeline(PipelineName=name, PipelineDefinition=json.dumps(definition), RoleArn=session.role_arn)
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]

    def finished() -> dict[str, Any] | None:
        desc = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        return desc if desc["PipelineExecutionStatus"] not in ("Executing", "Stopping") else None

    # the local runner runs one execution at a time (a queue): trainings other tests started may be ahead of this one
    desc = wait_for(finished, 900, f"pipeline execution {arn}", interval=0.5)
    assert desc["PipelineExecutionStatus"] == "Failed"
    steps = sm.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"]
    [prepare] = [s for s in steps if s["StepName"] == "Prepare"]
    assert prepare["StepStatus"] == "Failed"
    assert prepare["FailureReason"] == (
        "ClientError: Failed to invoke sagemaker:CreateProcessingJob. Error Details: "
        f"User: {session.arn} is not authorized to perform: iam:PassRole on resource: {OTHER_ROLE} "
        "because no identity-based policy allows the iam:PassRole action"
    )


def _without_step_references(value: Any) -> Any:
    """Step arguments with what earlier steps' outputs would fill in replaced by a placeholder URI."""
    if isinstance(value, list):
        return [_without_step_references(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Get"} and str(value["Get"]).startswith("Steps."):
        return "s3://placeholder/earlier-step-output/"
    return {k: _without_step_references(v) for k, v in value.items()}


def test_every_job_step_of_the_stacks_pipeline_may_be_launched_by_its_role(iam_as: Any) -> None:
    """The stack's own definition (template.yaml's TrainingPipeline) checked in enforce: each processing and
    training step's Create*Job and PassRole are inside the pipeline role's grant."""
    from loupe_local.standins.pipelines import interpreter
    from loupe_local.standins.pipelines.service import template_definition

    rt = iam_as("enforce")
    role = rt.arn("SageMakerExecutionRole")
    definition = json.loads(template_definition(rt))
    execution_id = uuid.uuid4().hex[:12]
    ex = Execution(
        arn=f"arn:aws:sagemaker:{rt.region}:123456789012:pipeline/p/execution/{execution_id}",
        pipeline_name="p",
        pipeline_arn=f"arn:aws:sagemaker:{rt.region}:123456789012:pipeline/p",
        display_name="p",
        description="",
        parameters=interpreter.execution_parameters(definition, None),
        definition=definition,
        root=Path(rt.state_dir),
        role_arn=role,
    )
    jobs = {
        "Processing": ("CreateProcessingJob", "ProcessingJobName"),
        "Training": ("CreateTrainingJob", "TrainingJobName"),
    }
    seen = usage_lines(rt.state_dir)
    launched = []
    for step in interpreter.ordered_steps(definition["Steps"]):
        if step["Type"] not in jobs:
            continue
        operation, name_member = jobs[step["Type"]]
        args = interpreter.resolve(ex, _without_step_references(step["Arguments"]))
        assert args["RoleArn"] == role  # the jobs run with the pipeline's own role
        request = {**args, name_member: f"pipelines-{execution_id}-{step['Name']}".lower()}
        assert rt.authorize_as(role, "sagemaker", operation, request) is None
        launched.append(operation)
    assert sorted(set(launched)) == ["CreateProcessingJob", "CreateTrainingJob"]
    mine = [r for r in usage(rt, seen) if r["operation"] in launched]
    assert {r["action"] for r in mine} == {
        "sagemaker:CreateProcessingJob",
        "sagemaker:CreateTrainingJob",
        "iam:PassRole",
    }
    assert {r["decision"] for r in mine} == {"Allow"}
