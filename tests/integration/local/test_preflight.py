"""``loupe preflight`` against the local AWS: real boto3 calls, each failure made real in the account.

The local AWS is one account for the whole test session: every test leaves the account as it found it (its own
thing groups, functions and roles; quotas and the service role put back).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from support.groundtruth import job_request, put_manifest

from loupe_local.cli import main
from loupe_local.preflight_checks import READ_ACTIONS, Finding, PreflightClients, run_all
from loupe_local.preflight_plan import StackPlan, plan
from loupe_local.standins.account_quotas import set_quota
from loupe_local.standins.groundtruth.service import local_workteam_arn

pytestmark = pytest.mark.integration

TRUST_GREENGRASS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "greengrass.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def _plan(local_aws: Any, **overrides: str) -> StackPlan:
    values = {
        "LabelingService": "GroundTruth",  # the Ground Truth check applies only then
        "WorkteamArn": local_workteam_arn(local_aws.region),
        "ThingGroupName": f"preflight-{uuid.uuid4().hex[:8]}",  # a group the account does not have yet
        "CreateThingGroup": "true",  # ... which the stack creates
        **overrides,
    }
    return plan(local_aws.root / "template.yaml", "loupe-preflight", values, local_aws.region)


def _findings(local_aws: Any, stack: StackPlan) -> dict[str, Finding]:
    """The checks' findings; every AWS call they made is one of the read-only actions preflight documents."""
    calls: list[str] = []

    def client(service: str) -> Any:
        made = local_aws.own_client(service)  # its own: the hook below must see only the checks' calls
        prefix = made.meta.service_model.signing_name
        made.meta.events.register("before-call", lambda model, **_: calls.append(f"{prefix}:{model.name}"))
        return made

    found = {f.check: f for f in run_all(stack, PreflightClients.from_factory(client))}
    assert calls and set(calls) <= set(READ_ACTIONS), sorted(set(calls) - set(READ_ACTIONS))
    return found


def _role(local_aws: Any, name: str, trust: dict[str, Any]) -> str:
    return local_aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


@pytest.fixture
def service_role(local_aws: Any) -> Iterator[str]:
    """A Greengrass service role associated with the account, as the console sets it up; taken back after."""
    name = f"Greengrass_ServiceRole-{uuid.uuid4().hex[:6]}"
    arn = _role(local_aws, name, TRUST_GREENGRASS)
    gg = local_aws.client("greengrassv2")
    gg.associate_service_role_to_account(roleArn=arn)
    yield arn
    gg.disassociate_service_role_from_account()
    local_aws.client("iam").delete_role(RoleName=name)


def test_a_ready_account_passes_with_what_it_found(local_aws: Any, service_role: str) -> None:
    stack = _plan(local_aws)
    found = _findings(local_aws, stack)

    assert all(action.split(":")[1].startswith(("Get", "List", "Describe")) for action in READ_ACTIONS)

    assert [f.check for f in found.values() if f.status == "FAIL"] == []
    assert found["template"].status == "OK"
    # the local stack already holds what it reserves (the provisioner reserves them as CloudFormation does)
    reserved, functions = sum(stack.reserved_concurrency.values()), len(stack.reserved_concurrency)
    assert found["lambda concurrency"].status == "OK"
    assert (
        f"reserves {reserved} units over {functions} functions; account limit 1000, unreserved {1000 - reserved}"
        in found["lambda concurrency"].found
    )
    assert found["quota ml.g4dn.xlarge for spot training job usage"].status == "OK"
    assert found["quota ml.g4dn.xlarge for training job usage"].status == "OK"
    assert found["quota ml.m5.xlarge for processing job usage"].status == "OK"
    assert found["greengrass service role"] == Finding("greengrass service role", "OK", f"{service_role} is associated")
    assert found[f"thing group {stack.thing_group_name}"].status == "OK"
    ground_truth = found["ground truth"]
    assert "private workteam loupe-local exists" in ground_truth.found
    assert "no longer open to new customers" in ground_truth.action  # AWS's note, quoted


def test_reserved_concurrency_the_account_cannot_spare_fails(local_aws: Any, service_role: str) -> None:
    """Another function of the account reserves so much that 89 units stay unreserved beside the local stack's own
    reservation R, and the stack's R more would leave fewer than the 100 Lambda keeps."""
    reserved = sum(_plan(local_aws).reserved_concurrency.values())
    lam, name = local_aws.client("lambda"), f"other-app-{uuid.uuid4().hex[:6]}"
    role = _role(local_aws, name, {"Version": "2012-10-17", "Statement": []})
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return None\n")
    lam.create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler", Code={"ZipFile": code.getvalue()}
    )
    try:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1000 - reserved - 89)
        finding = _findings(local_aws, _plan(local_aws))["lambda concurrency"]
    finally:
        lam.delete_function(FunctionName=name)
        local_aws.client("iam").delete_role(RoleName=name)

    assert finding.status == "FAIL"
    assert "unreserved 89" in finding.found
    assert f"{89 - reserved} would stay unreserved, Lambda keeps at least 100" in finding.found
    assert f"'Concurrent executions' (lambda L-B99A9384) >= {1000 + 100 - (89 - reserved)}" in finding.action


def test_a_training_quota_of_zero_fails_with_the_request_to_make(local_aws: Any, service_role: str) -> None:
    spot = "ml.g4dn.xlarge for spot training job usage"
    on_demand = "ml.g4dn.xlarge for training job usage"
    set_quota(local_aws.state_dir, "sagemaker", spot, 0)
    set_quota(local_aws.state_dir, "sagemaker", on_demand, 0)
    try:
        with_spot = _findings(local_aws, _plan(local_aws, TrainingUseSpot="true"))
        without = _findings(local_aws, _plan(local_aws, TrainingUseSpot="false"))
    finally:
        set_quota(local_aws.state_dir, "sagemaker", spot, None)
        set_quota(local_aws.state_dir, "sagemaker", on_demand, None)

    assert with_spot[f"quota {spot}"].status == "FAIL"
    assert (
        "request-service-quota-increase --service-code sagemaker --quota-code L-" in with_spot[f"quota {spot}"].action
    )
    assert with_spot[f"quota {on_demand}"].status == "WARN"  # not what a spot job uses
    assert without[f"quota {on_demand}"].status == "FAIL"
    assert f"quota {spot}" not in without


def test_an_instance_type_sagemaker_does_not_offer_is_named(local_aws: Any, service_role: str) -> None:
    found = _findings(local_aws, _plan(local_aws, TrainingInstanceType="ml.g4dn.xlarg", TrainingUseSpot="false"))
    finding = found["quota ml.g4dn.xlarg for training job usage"]
    assert finding.status == "WARN"
    assert "misspelled or not offered here" in finding.found


def test_no_greengrass_service_role_fails_with_the_fix(local_aws: Any) -> None:
    found = _findings(local_aws, _plan(local_aws))["greengrass service role"]
    assert found.status == "FAIL"
    assert "no Greengrass service role is associated" in found.found
    assert "aws greengrassv2 associate-service-role-to-account" in found.action


def test_an_associated_role_deleted_from_iam_fails(local_aws: Any) -> None:
    name = f"Greengrass_ServiceRole-{uuid.uuid4().hex[:6]}"
    arn = _role(local_aws, name, TRUST_GREENGRASS)
    gg = local_aws.client("greengrassv2")
    gg.associate_service_role_to_account(roleArn=arn)
    local_aws.client("iam").delete_role(RoleName=name)
    try:
        found = _findings(local_aws, _plan(local_aws))["greengrass service role"]
    finally:
        gg.disassociate_service_role_from_account()
    assert found.status == "FAIL"
    assert f"the associated role {arn} no longer exists in IAM" in found.found


def test_a_group_with_someone_elses_deployment_is_reported(local_aws: Any, service_role: str) -> None:
    group = f"factory-line-{uuid.uuid4().hex[:6]}"
    arn = local_aws.client("iot").create_thing_group(thingGroupName=group)["thingGroupArn"]
    gg = local_aws.client("greengrassv2")
    spooler = "arn:aws:greengrass:us-east-1:aws:components:aws.greengrass.DiskSpooler"
    version = gg.list_component_versions(arn=spooler)["componentVersions"][0]["componentVersion"]
    dep = gg.create_deployment(
        targetArn=arn,
        deploymentName="line-3 plugins",
        components={"aws.greengrass.DiskSpooler": {"componentVersion": version}},
    )
    try:
        found = _findings(local_aws, _plan(local_aws, ThingGroupName=group))[f"thing group {group}"]
    finally:
        gg.cancel_deployment(deploymentId=dep["deploymentId"])
        local_aws.client("iot").delete_thing_group(thingGroupName=group)

    assert found.status == "FAIL"  # the template creates its group: CloudFormation cannot create one that exists
    assert "exists outside stack loupe-preflight" in found.found
    assert f"current deployment {dep['deploymentId']} (line-3 plugins, ACTIVE)" in found.found
    assert f"aws.greengrass.DiskSpooler {version}" in found.found
    assert "Loupe's deployment to this group will replace that deployment" in found.action


def test_an_existing_group_the_stack_is_told_to_use_warns_of_the_replacement(local_aws: Any, service_role: str) -> None:
    """With the template's group resource switched off by its condition, the stack deploys to an existing group:
    it must exist, and its current deployment is what Loupe's will replace."""
    group = f"factory-line-{uuid.uuid4().hex[:6]}"
    stack = _plan(local_aws, ThingGroupName=group, CreateThingGroup="false")
    assert stack.thing_group_logical_id is None
    missing = _findings(local_aws, stack)[f"thing group {group}"]
    arn = local_aws.client("iot").create_thing_group(thingGroupName=group)["thingGroupArn"]
    gg = local_aws.client("greengrassv2")
    spooler = "arn:aws:greengrass:us-east-1:aws:components:aws.greengrass.DiskSpooler"
    version = gg.list_component_versions(arn=spooler)["componentVersions"][0]["componentVersion"]
    try:
        empty = _findings(local_aws, stack)[f"thing group {group}"]
        dep = gg.create_deployment(
            targetArn=arn, components={"aws.greengrass.DiskSpooler": {"componentVersion": version}}
        )
        deployed = _findings(local_aws, stack)[f"thing group {group}"]
        gg.cancel_deployment(deploymentId=dep["deploymentId"])
    finally:
        local_aws.client("iot").delete_thing_group(thingGroupName=group)

    assert missing.status == "FAIL"
    assert "does not exist, and the stack is told to use an existing group" in missing.found
    assert empty == Finding(f"thing group {group}", "OK", "exists with no Greengrass deployment")
    assert deployed.status == "WARN"
    assert f"current deployment {dep['deploymentId']}" in deployed.found
    assert "will replace that deployment" in deployed.action


def test_a_workteam_that_does_not_exist_fails(local_aws: Any, service_role: str) -> None:
    missing = f"arn:aws:sagemaker:{local_aws.region}:123456789012:workteam/private-crowd/nobody"
    elsewhere = "arn:aws:sagemaker:eu-west-1:123456789012:workteam/private-crowd/loupe-local"
    not_found = _findings(local_aws, _plan(local_aws, WorkteamArn=missing))["ground truth"]
    other_region = _findings(local_aws, _plan(local_aws, WorkteamArn=elsewhere))["ground truth"]
    assert not_found.status == "FAIL"
    assert "private workteam nobody not found" in not_found.found
    assert other_region.status == "FAIL"
    assert f"is not a workteam of account 123456789012 in {local_aws.region}" in other_region.found


def test_parameters_the_template_rules_refuse_fail_before_anything_else(local_aws: Any, service_role: str) -> None:
    found = _findings(local_aws, _plan(local_aws, WorkteamArn=""))
    assert found["template"].status == "FAIL"
    assert found["template"].found.startswith("ValidationError: LabelingService=GroundTruth needs WorkteamArn")
    assert found["ground truth"].status == "FAIL"


def test_a_labeling_job_history_is_the_evidence_ground_truth_is_usable(local_aws: Any, service_role: str) -> None:
    before = _findings(local_aws, _plan(local_aws))["ground truth"]
    env = SimpleNamespace(s3=local_aws.client("s3"), artifacts=local_aws.physical("ArtifactBucket"))
    uri = put_manifest(env, f"preflight/{uuid.uuid4().hex[:6]}.manifest", [json.dumps({"source-ref": "s3://x/y.jpg"})])
    name = f"preflight-{uuid.uuid4().hex[:6]}"
    local_aws.client("sagemaker").create_labeling_job(**job_request(env, name, uri))
    after = _findings(local_aws, _plan(local_aws))["ground truth"]

    if "no labeling job in this account" in before.found:  # alone in the session, the account had none yet
        assert before.status == "WARN"
        assert "nothing read-only shows this account may create labeling jobs" in before.found
    assert after.status == "OK", after
    assert f"(latest {name}, " in after.found
    assert "the account has used Ground Truth (this does not prove it still may)" in after.found


def test_what_the_profile_may_not_read_is_not_checked_and_says_why(local_aws: Any) -> None:
    """A key the account does not accept: every AWS check says it could not conclude, none passes or crashes."""
    session = boto3.Session(
        aws_access_key_id=local_aws.credentials.access_key_id,
        aws_secret_access_key="not-the-secret",
        region_name=local_aws.region,
    )
    clients = PreflightClients.from_factory(lambda service: session.client(service, endpoint_url=local_aws.endpoint))
    found = run_all(_plan(local_aws), clients)

    aws_checks = [f for f in found if f.check != "template"]
    assert {f.check for f in aws_checks} == {
        "ground truth",
        "lambda concurrency",
        "sagemaker quotas",
        "greengrass service role",
        "thing group",
    }
    for finding in aws_checks:
        assert finding.status == "WARN", finding
        assert finding.found.startswith("not checked: "), finding


def test_the_command_exits_1_on_a_fail_and_0_once_it_is_fixed(
    local_aws: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``loupe preflight`` as a user runs it: the SDK's standard environment points it at the account."""
    monkeypatch.chdir(local_aws.root)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in {"AWS_ENDPOINT_URL": local_aws.endpoint, **local_aws.credentials.env()}.items():
        monkeypatch.setenv(key, value)
    argv = [
        "preflight",
        "--region",
        local_aws.region,
        "--stack-name",
        "loupe-preflight",
        "--json",
        "--parameter-overrides",
        "LabelingService=GroundTruth",
        f"WorkteamArn={local_workteam_arn(local_aws.region)}",
        f"ThingGroupName=preflight-{uuid.uuid4().hex[:8]}",
        "CreateThingGroup=true",
    ]
    assert main(argv) == 1  # no Greengrass service role yet
    failed = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["status"] == "FAIL"]
    assert [f["check"] for f in failed] == ["greengrass service role"]

    name = f"Greengrass_ServiceRole-{uuid.uuid4().hex[:6]}"
    gg = local_aws.client("greengrassv2")
    gg.associate_service_role_to_account(roleArn=_role(local_aws, name, TRUST_GREENGRASS))
    try:
        assert main(argv) == 0
    finally:
        gg.disassociate_service_role_from_account()
        local_aws.client("iam").delete_role(RoleName=name)
    assert json.loads(capsys.readouterr().out)["ok"] is True
