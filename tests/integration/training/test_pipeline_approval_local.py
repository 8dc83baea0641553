"""A pipeline caller asking for ``ModelApprovalStatus=Approved`` on the local stack (AutoApprove=false): refused as
SageMaker refuses an undeclared parameter; no execution, no package, no deployment."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from loupe_local.standins.pipelines.service import ensure_pipeline

pytestmark = pytest.mark.integration


def test_starting_the_pipeline_with_approved_registers_nothing_approved(local_aws) -> None:
    assert local_aws.parameter_values.get("AutoApprove", "false") == "false"
    sm, sfn = local_aws.client("sagemaker"), local_aws.client("stepfunctions")
    name = ensure_pipeline(local_aws)
    group = local_aws.resources["ModelPackageGroup"].attrs["ModelPackageGroupName"]
    deployments = local_aws.arn("EdgeDeploymentStateMachine")

    def state() -> tuple[list, list, list]:
        runs = sm.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]
        packages = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
        rollouts = sfn.list_executions(stateMachineArn=deployments)["executions"]
        return runs, packages, rollouts

    before = state()
    with pytest.raises(ClientError) as refused:
        sm.start_pipeline_execution(
            PipelineName=name,
            ClientRequestToken=uuid.uuid4().hex,
            PipelineParameters=[{"Name": "ModelApprovalStatus", "Value": "Approved"}],
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Unknown parameter 'ModelApprovalStatus'" in refused.value.response["Error"]["Message"]
    # refused before anything exists: no execution to register a package, nothing for a deployment to pick up
    assert state() == before
    # what an execution of this stack would register: the stack's status, whatever the caller asks
    definition = json.loads(sm.describe_pipeline(PipelineName=name)["PipelineDefinition"])
    gate = next(s for s in definition["Steps"] if s["Type"] == "Condition")
    (register,) = gate["Arguments"]["IfSteps"]
    assert register["Arguments"]["ModelApprovalStatus"] == "PendingManualApproval"
    assert "ModelApprovalStatus" not in {p["Name"] for p in definition["Parameters"]}
