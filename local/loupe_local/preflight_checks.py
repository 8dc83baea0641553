"""``loupe preflight``'s checks: what a ``sam deploy`` of Loupe would run into in this account, read-only.

Each check takes the :class:`StackPlan` and the boto3 clients it reads with (Describe/Get/List calls only) and
returns one :class:`Finding`: OK, WARN (it may fail, or this cannot tell) or FAIL (the deploy or the loop will
fail as things stand), with what it found and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from loupe.aws_errors import error_code, error_message
from loupe_local.preflight_plan import StackPlan

Status = Literal["OK", "WARN", "FAIL"]
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html: "You can reserve up to the
# Unreserved account concurrency value, minus 100 for functions that don't have reserved concurrency."
LAMBDA_UNRESERVED_FLOOR = 100
LAMBDA_CONCURRENCY_QUOTA_CODE = "L-B99A9384"
GROUND_TRUTH_NOTE = (
    'AWS: "Amazon SageMaker Ground Truth is no longer open to new customers. Existing customers can continue to '
    'use the service as normal." (docs.aws.amazon.com/sagemaker/latest/dg/sms-create-labeling-job-api.html)'
)
# Every AWS call the checks make, as IAM actions: what the profile needs (all read-only).
READ_ACTIONS = (
    "cloudformation:DescribeStackResource",
    "cloudformation:ListStackResources",
    "greengrass:GetDeployment",
    "greengrass:GetServiceRoleForAccount",
    "greengrass:ListDeployments",
    "iam:GetRole",
    "iot:DescribeThingGroup",
    "lambda:GetAccountSettings",
    "lambda:GetFunctionConcurrency",
    "sagemaker:DescribeWorkteam",
    "sagemaker:ListLabelingJobs",
    "servicequotas:ListAWSDefaultServiceQuotas",
    "servicequotas:ListServiceQuotas",
    "sts:GetCallerIdentity",
)
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    found: str
    action: str = ""

    def line(self) -> str:
        return f"{self.status:<4} {self.check}: {self.found}" + (f" -> {self.action}" if self.action else "")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class PreflightClients:
    """The boto3 clients the checks read with, all of one account and Region."""

    lambda_: Any
    service_quotas: Any
    sagemaker: Any
    greengrassv2: Any
    iot: Any
    cloudformation: Any
    iam: Any
    sts: Any

    @classmethod
    def from_factory(cls, client: Callable[[str], Any]) -> PreflightClients:
        return cls(
            lambda_=client("lambda"),
            service_quotas=client("service-quotas"),
            sagemaker=client("sagemaker"),
            greengrassv2=client("greengrassv2"),
            iot=client("iot"),
            cloudformation=client("cloudformation"),
            iam=client("iam"),
            sts=client("sts"),
        )


def run_all(plan: StackPlan, clients: PreflightClients) -> list[Finding]:
    checks: list[tuple[str, Callable[[StackPlan, PreflightClients], Finding | list[Finding]]]] = [
        ("template", check_template),
        ("ground truth", check_ground_truth),
        ("lambda concurrency", check_lambda_concurrency),
        ("sagemaker quotas", check_sagemaker_quotas),
        ("greengrass service role", check_greengrass_service_role),
        ("thing group", check_thing_group),
    ]
    out: list[Finding] = []
    for name, check in checks:
        try:
            result = check(plan, clients)
        except Exception as exc:  # one unreadable service must not hide the others' findings
            result = _unreadable(name, exc)
        out.extend(result if isinstance(result, list) else [result])
    return out


def _unreadable(check: str, exc: Exception) -> Finding:
    code = error_code(exc)
    if code in _DENIED:
        return Finding(check, "WARN", f"not checked: {code}: {error_message(exc)}", "let the profile read it")
    return Finding(check, "WARN", f"not checked: {code or type(exc).__name__}: {error_message(exc)}")


# ---------------------------------------------------------------------------------------------- template


def check_template(plan: StackPlan, clients: PreflightClients) -> Finding:
    if plan.template_error:
        return Finding("template", "FAIL", plan.template_error, "fix the parameter overrides")
    return Finding("template", "OK", "parameters satisfy the template's patterns, ranges and rules")


# ---------------------------------------------------------------------------------------------- Ground Truth


def check_ground_truth(plan: StackPlan, clients: PreflightClients) -> Finding:
    """No API says "this account may use Ground Truth". The closest read-only evidence: the account's labeling
    job history (an existing customer has some) and, for a private workforce, that the workteam exists here."""
    name = "ground truth"
    if plan.labeling_service != "GroundTruth":
        return Finding(name, "OK", f"LabelingService={plan.labeling_service}: the stack does not use Ground Truth")
    sm = clients.sagemaker
    jobs = sm.list_labeling_jobs(MaxResults=10, SortBy="CreationTime", SortOrder="Descending")
    history = jobs.get("LabelingJobSummaryList", [])
    evidence = (
        f"{len(history)}{'+' if jobs.get('NextToken') else ''} labeling job(s) in this account and Region "
        f"(latest {history[0]['LabelingJobName']}, {history[0]['LabelingJobStatus']})"
        if history
        else "no labeling job in this account and Region"
    )
    if plan.workteam_arn:
        arn = plan.workteam_arn.split(":")
        region, account = (arn[3], arn[4]) if len(arn) > 5 else ("", "")
        caller = clients.sts.get_caller_identity()["Account"]
        here = sm.meta.region_name
        if (region, account) != (here, caller):
            return Finding(
                name,
                "FAIL",
                f"WorkteamArn {plan.workteam_arn} is not a workteam of account {caller} in {here}",
                "give a private workteam of this account and Region (Ground Truth refuses another's)",
            )
        team_name = plan.workteam_arn.rsplit("/", 1)[-1]
        try:
            sm.describe_workteam(WorkteamName=team_name)
        except Exception as exc:
            if error_code(exc) not in {"ResourceNotFound", "ValidationException"}:
                raise  # denied, throttled, down: not checked, rather than "not found"
            return Finding(
                name,
                "FAIL",
                f"private workteam {team_name} not found ({error_code(exc)}); {evidence}",
                "create the workteam (SageMaker console > Labeling workforces) or fix WorkteamArn",
            )
        team = f"private workteam {team_name} exists"
    else:
        return Finding(
            name,
            "FAIL",
            "LabelingService=GroundTruth with no workteam",
            "set WorkteamArn=<private or vendor workteam ARN>, or keep the default LabelingService=Loupe",
        )
    if history:
        return Finding(
            name,
            "OK",
            f"{team}; {evidence}: the account has used Ground Truth (this does not prove it still may)",
            GROUND_TRUTH_NOTE,
        )
    return Finding(
        name,
        "WARN",
        f"{team}; {evidence}: nothing read-only shows this account may create labeling jobs",
        f"{GROUND_TRUTH_NOTE}. A new account may be refused at its first CreateLabelingJob",
    )


# ---------------------------------------------------------------------------------------------- Lambda


def check_lambda_concurrency(plan: StackPlan, clients: PreflightClients) -> Finding:
    name = "lambda concurrency"
    wanted = sum(plan.reserved_concurrency.values())
    limit = clients.lambda_.get_account_settings()["AccountLimit"]
    total, unreserved = int(limit["ConcurrentExecutions"]), int(limit["UnreservedConcurrentExecutions"])
    held = _stack_reservations(plan.stack_name, clients)  # an update gives these back before it reserves again
    left = unreserved + held - wanted
    found = (
        f"the stack reserves {wanted} units over {len(plan.reserved_concurrency)} functions; account limit {total}, "
        f"unreserved {unreserved}" + (f" ({held} of the reserved held by stack {plan.stack_name})" if held else "")
    )
    if left < LAMBDA_UNRESERVED_FLOOR:
        need = total + LAMBDA_UNRESERVED_FLOOR - left
        return Finding(
            name,
            "FAIL",
            f"{found}: {left} would stay unreserved, Lambda keeps at least {LAMBDA_UNRESERVED_FLOOR}",
            f"request 'Concurrent executions' (lambda {LAMBDA_CONCURRENCY_QUOTA_CODE}) >= {need} in Service Quotas, "
            "or free reserved concurrency of other functions",
        )
    return Finding(name, "OK", f"{found}: {left} stay unreserved")


def _stack_reservations(stack_name: str, clients: PreflightClients) -> int:
    cfn, held = clients.cloudformation, 0
    try:
        pages = list(cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name))
    except Exception as exc:
        if error_code(exc) == "ValidationError" and "does not exist" in error_message(exc):
            return 0  # a new stack holds nothing yet
        raise
    for page in pages:
        for res in page["StackResourceSummaries"]:
            if res["ResourceType"] == "AWS::Lambda::Function" and res.get("PhysicalResourceId"):
                got = clients.lambda_.get_function_concurrency(FunctionName=res["PhysicalResourceId"])
                held += int(got.get("ReservedConcurrentExecutions") or 0)
    return held


# ---------------------------------------------------------------------------------------------- SageMaker


def check_sagemaker_quotas(plan: StackPlan, clients: PreflightClients) -> list[Finding]:
    """The pipeline's training job uses the spot quota when TrainingUseSpot=true, the on-demand one otherwise;
    its processing steps (prepare, evaluate) the processing quota of their instance type."""
    quotas = _QuotaBook(clients.service_quotas, "sagemaker")
    t = plan.training_instance_type
    wanted = [(f"{t} for spot training job usage", True)] if plan.spot_training else []
    wanted.append((f"{t} for training job usage", not plan.spot_training))
    if plan.processing_instance_type:
        wanted.append((f"{plan.processing_instance_type} for processing job usage", True))
    out = []
    for quota_name, needed in wanted:
        check = f"quota {quota_name}"
        quota = quotas.find(quota_name)
        if quota is None:
            out.append(
                Finding(
                    check,
                    "WARN" if needed else "OK",
                    "no such SageMaker quota in this Region: the instance type is misspelled or not offered here",
                    "choose an instance type SageMaker offers in this Region" if needed else "",
                )
            )
            continue
        value = float(quota["Value"])
        if value >= 1:
            out.append(Finding(check, "OK", f"{value:g} instance(s) ({quota['QuotaCode']})"))
            continue
        fix = (
            f"aws service-quotas request-service-quota-increase --service-code sagemaker "
            f"--quota-code {quota['QuotaCode']} --desired-value 1"
        )
        if needed:
            out.append(Finding(check, "FAIL", f"0 instances ({quota['QuotaCode']}): the job cannot start", fix))
        else:
            out.append(Finding(check, "WARN", "0 instances: unused while TrainingUseSpot=true", fix))
    return out


class _QuotaBook:
    """A service's quotas by name: applied values first (ListServiceQuotas), AWS defaults for those it omits."""

    def __init__(self, client: Any, service_code: str) -> None:
        self.client, self.service_code = client, service_code
        self._lists: dict[str, dict[str, dict[str, Any]]] = {}

    def _list(self, operation: str) -> dict[str, dict[str, Any]]:
        if operation not in self._lists:
            pages = self.client.get_paginator(operation).paginate(ServiceCode=self.service_code)
            self._lists[operation] = {q["QuotaName"]: q for page in pages for q in page["Quotas"]}
        return self._lists[operation]

    def find(self, name: str) -> dict[str, Any] | None:
        return self._list("list_service_quotas").get(name) or self._list("list_aws_default_service_quotas").get(name)


# ---------------------------------------------------------------------------------------------- Greengrass


def check_greengrass_service_role(plan: StackPlan, clients: PreflightClients) -> Finding:
    """greengrassv2 GetServiceRoleForAccount (docs.aws.amazon.com/greengrass/v2/APIReference/
    API_GetServiceRoleForAccount.html); the role must still exist in IAM."""
    name = "greengrass service role"
    fix = (
        "create a role trusted by greengrass.amazonaws.com with AWSGreengrassResourceAccessRolePolicy, then "
        "`aws greengrassv2 associate-service-role-to-account --role-arn <its ARN>` "
        "(docs.aws.amazon.com/greengrass/v2/developerguide/greengrass-service-role.html)"
    )
    try:
        role_arn = clients.greengrassv2.get_service_role_for_account().get("roleArn")
    except Exception as exc:
        if error_code(exc) not in {"ResourceNotFoundException", "NotFoundException", "404"}:
            raise
        role_arn = None
    if not role_arn:
        return Finding(name, "FAIL", "no Greengrass service role is associated with this account in this Region", fix)
    try:
        clients.iam.get_role(RoleName=role_arn.rsplit("/", 1)[-1])
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return Finding(name, "FAIL", f"the associated role {role_arn} no longer exists in IAM", fix)
    return Finding(name, "OK", f"{role_arn} is associated")


def check_thing_group(plan: StackPlan, clients: PreflightClients) -> Finding:
    """A deployment to a target replaces that target's previous deployment: the devices end with the new
    deployment's components, the old ones are removed (docs.aws.amazon.com/greengrass/v2/developerguide/
    create-deployments.html: "If you create a deployment to a target that already has a deployment, the new
    deployment replaces the existing one")."""
    name = f"thing group {plan.thing_group_name}"
    try:
        group = clients.iot.describe_thing_group(thingGroupName=plan.thing_group_name)
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        group = None
    if group is None:
        if plan.thing_group_logical_id:
            return Finding(name, "OK", "does not exist yet: the stack creates it")
        return Finding(name, "FAIL", "does not exist, and the stack is told to use an existing group", "create it")
    current = _current_deployment(group["thingGroupArn"], clients)
    owner = _owning_stack(plan, clients)
    replaces = (
        "Loupe's deployment to this group will replace that deployment (one deployment per target): its core "
        "devices would keep only Loupe's components"
    )
    if plan.thing_group_logical_id and owner is None:
        return Finding(
            name,
            "FAIL",
            f"exists outside stack {plan.stack_name} ({current or 'no deployment'}): CloudFormation cannot create "
            "a thing group of that name",
            "choose another ThingGroupName" + (f"; to use this group instead, know that {replaces}" if current else ""),
        )
    if current is None:
        return Finding(name, "OK", "exists with no Greengrass deployment")
    if owner is not None:
        return Finding(name, "OK", f"belongs to stack {plan.stack_name}; {current}")
    return Finding(name, "WARN", current, f"{replaces}; give Loupe a group of its own to keep them")


def _current_deployment(group_arn: str, clients: PreflightClients) -> str | None:
    gg = clients.greengrassv2
    latest = gg.list_deployments(targetArn=group_arn, historyFilter="LATEST_ONLY").get("deployments", [])
    if not latest:
        return None
    dep = gg.get_deployment(deploymentId=latest[0]["deploymentId"])
    components = ", ".join(f"{k} {v.get('componentVersion', '')}".strip() for k, v in dep.get("components", {}).items())
    return (
        f"current deployment {dep['deploymentId']} ({dep.get('deploymentName') or 'unnamed'}, "
        f"{dep.get('deploymentStatus')}) with {components or 'no components'}"
    )


def _owning_stack(plan: StackPlan, clients: PreflightClients) -> str | None:
    if not plan.thing_group_logical_id:
        return None
    try:
        res = clients.cloudformation.describe_stack_resource(
            StackName=plan.stack_name, LogicalResourceId=plan.thing_group_logical_id
        )["StackResourceDetail"]
    except Exception as exc:
        if error_code(exc) == "ValidationError":
            return None  # no such stack, or the stack has no such resource yet
        raise
    return plan.stack_name if res.get("PhysicalResourceId") == plan.thing_group_name else None
