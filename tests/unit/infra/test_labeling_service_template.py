"""LabelingService in template.yaml: the default stack (the labeling app) has no Ground Truth resource and no
permission to call Ground Truth or to pass a role to it; LabelingService=GroundTruth brings exactly those back. The
check reads the template after SAM's transform (what CloudFormation deploys, every generated role and rule with
its Condition) and drops what the parameters' conditions leave out, as CloudFormation does. Each rule also runs on a
copy that breaks it, so it cannot pass by checking nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from loupe_local.host.provisioner import Provisioner
from loupe_local.template import SamApp, load_sam_app

REPO_ROOT = Path(__file__).resolve().parents[3]
PRIVATE = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/inspectors"
# what only a Ground Truth stack may contain: its API, its job-state events, its worker CORS grant
GROUND_TRUTH_MARKERS = (
    "sagemaker:CreateLabelingJob",
    "sagemaker:StopLabelingJob",
    "SageMaker Ground Truth Labeling Job State Change",
    "ground-truth-workers",
)


@pytest.fixture(scope="module")
def app() -> SamApp:
    return load_sam_app(REPO_ROOT / "template.yaml")


def deployed(app: SamApp, **parameters: str) -> dict[str, Any]:
    """The transformed template's resources whose Condition holds for these parameters, intrinsic functions
    that pick by condition (Fn::If) resolved; other intrinsics are left as they are."""
    provisioner = Provisioner(app, None, "loupe", "us-east-1", parameters)
    provisioner.check_parameters()
    resolver = provisioner.resolver

    def pick(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Fn::If"}:
                name, yes, no = value["Fn::If"]
                return pick(yes if resolver.condition(name) else no)
            return {k: pick(v) for k, v in value.items() if pick(v) != {"Ref": "AWS::NoValue"}}
        if isinstance(value, list):
            return [pick(v) for v in value if pick(v) != {"Ref": "AWS::NoValue"}]
        return value

    return {
        name: pick(res)
        for name, res in app.transformed["Resources"].items()
        if "Condition" not in res or resolver.condition(res["Condition"])
    }


def ground_truth_problems(resources: dict[str, Any]) -> list[str]:
    """Every resource that names Ground Truth's API or events, and every iam:PassRole of the role Ground Truth
    would run as (the labeling tasks function's: the only one that creates labeling jobs)."""
    found = []
    for name, res in sorted(resources.items()):
        text = json.dumps(res)
        found += [f"{name}: {marker}" for marker in GROUND_TRUTH_MARKERS if marker in text]
        grant = res.get("Type") in ("AWS::IAM::Role", "AWS::IAM::Policy") and name.startswith("LabelingTasks")
        if grant and "iam:PassRole" in text:
            found.append(f"{name}: iam:PassRole")
    return found


def test_the_default_stack_has_no_ground_truth_resource_or_permission(app) -> None:
    resources = deployed(app)
    assert ground_truth_problems(resources) == []
    assert "LabelingCallbackFunction" not in resources and "LabelingTasksGroundTruthPolicy" not in resources
    # the labeling app is there instead: the tasks function reaches its table
    role = json.dumps(resources["LabelingTasksFunctionRole"])
    assert "LabelingTasksTable" in role and "states:SendTaskSuccess" in role


def test_ground_truth_brings_its_job_permissions_events_and_cors_back(app) -> None:
    resources = deployed(app, LabelingService="GroundTruth", WorkteamArn=PRIVATE)
    found = ground_truth_problems(resources)
    assert "LabelingTasksGroundTruthPolicy: sagemaker:CreateLabelingJob" in found
    assert "LabelingTasksGroundTruthPolicy: iam:PassRole" in found
    assert any(f.endswith("SageMaker Ground Truth Labeling Job State Change") for f in found)
    assert "RawBucket: ground-truth-workers" in found
    policy = resources["LabelingTasksGroundTruthPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "LabelingTasksFunctionRole"}]


def test_the_rule_catches_a_ground_truth_grant_left_in_the_default_stack(app) -> None:
    broken = copy.deepcopy(app)
    del broken.transformed["Resources"]["LabelingTasksGroundTruthPolicy"]["Condition"]
    found = ground_truth_problems(deployed(broken))
    assert "LabelingTasksGroundTruthPolicy: sagemaker:CreateLabelingJob" in found
    assert "LabelingTasksGroundTruthPolicy: iam:PassRole" in found


def test_the_options_reach_the_state_machines_configuration(app) -> None:
    """LabelingService, LabelersPerImage, the task lifetime and the decline limit reach the run's Configure
    state (the job spec)."""
    substitutions = app.original["Resources"]["LabelingStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert substitutions["LabelingService"] == {"Ref": "LabelingService"}
    assert substitutions["LabelersPerImage"] == {"Ref": "LabelersPerImage"}
    assert substitutions["LabelingTaskLifetimeSeconds"] == {"Ref": "LabelingTaskLifetimeSeconds"}
    assert substitutions["LabelingDeclineLimit"] == {"Ref": "LabelingDeclineLimit"}
    asl = json.loads((REPO_ROOT / "statemachines" / "labeling.asl.json").read_text())
    assert asl["States"]["Configure"]["Result"] == {
        "verify": "${EnableVerification}",
        "service": "${LabelingService}",
        "labelers_per_image": "${LabelersPerImage}",
        "task_lifetime_seconds": "${LabelingTaskLifetimeSeconds}",
        "decline_limit": "${LabelingDeclineLimit}",
    }
    params = app.original["Parameters"]
    assert params["LabelingService"]["Default"] == "Loupe"
    assert (params["LabelersPerImage"]["MinValue"], params["LabelersPerImage"]["MaxValue"]) == (1, 5)
    decline = params["LabelingDeclineLimit"]
    assert (decline["Default"], decline["MinValue"], decline["MaxValue"]) == (2, 1, 10)
