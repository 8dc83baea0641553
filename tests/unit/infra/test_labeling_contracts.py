"""template.yaml's labeling contracts, checked on the project's own loader and on the local AWS's parameter
validation (the same code `loupe local up` runs before it creates anything):

- with LabelingService=GroundTruth, every bucket Ground Truth reads input images from carries the CORS rule AWS
  prescribes (https://docs.aws.amazon.com/sagemaker/latest/dg/sms-cors-update.html), GET only; with the default
  labeling app, no bucket grants any origin;
- a Ground Truth deploy names its private or vendor workteam (the public workforce, Mechanical Turk, is closed and
  its ARN refused); the default deploy needs none and gives the labeling function none.

Each rule runs against the real template and against a known-bad sample, so it cannot pass by checking nothing.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from loupe_local.host.provisioner import Provisioner
from loupe_local.template import _NO_VALUE, SamApp, TemplateError, load_sam_app

REPO_ROOT = Path(__file__).resolve().parents[3]
PRIVATE = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/inspectors"
PUBLIC = "arn:aws:sagemaker:us-east-1:394669845002:workteam/public-crowd/default"


@pytest.fixture(scope="module")
def app() -> SamApp:
    return load_sam_app(REPO_ROOT / "template.yaml")


# --------------------------------------------------------------------------------------------- CORS


def image_buckets(template: dict[str, Any]) -> set[str]:
    """The buckets whose objects are labeling input: the one every function knows as RAW_BUCKET (uploads,
    normalized/ copies, edge feedback and imports are all written there; manifests point into it)."""
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    return {env["RAW_BUCKET"]["Ref"]}


def cors_problems(resources: dict[str, Any], buckets: set[str]) -> list[str]:
    problems = []
    for name in sorted(buckets):
        rules = resources[name].get("Properties", {}).get("CorsConfiguration", {}).get("CorsRules", [])
        if not any(
            "GET" in r.get("AllowedMethods", [])
            and "*" in r.get("AllowedOrigins", [])
            and "Access-Control-Allow-Origin" in r.get("ExposedHeaders", [])
            for r in rules
        ):
            problems.append(f"{name}: no CORS rule letting the workers' browsers GET images (sms-cors-update)")
        for rule in rules:
            if set(rule.get("AllowedMethods", [])) - {"GET", "HEAD"}:
                problems.append(f"{name}: CORS rule {rule.get('Id')} allows writes from any origin")
    return problems


def resolved_resources(app: SamApp, **parameters: str) -> dict[str, Any]:
    """The buckets' properties as CloudFormation resolves them for these parameters (an Fn::If on a condition)."""
    provisioner = validate(app, **parameters)
    out = {}
    for name in image_buckets(app.original):
        props = app.original["Resources"][name].get("Properties", {})
        cors = provisioner.resolver.resolve(props.get("CorsConfiguration", {}))
        out[name] = {"Properties": {"CorsConfiguration": cors if isinstance(cors, dict) else {}}}
    return out


def test_every_bucket_ground_truth_reads_images_from_has_the_documented_cors_rule(app) -> None:
    buckets = image_buckets(app.original)
    assert buckets == {"RawBucket"}
    ground_truth = resolved_resources(app, LabelingService="GroundTruth", WorkteamArn=PRIVATE)
    assert cors_problems(ground_truth, buckets) == []


def test_the_default_stack_lets_no_origin_read_the_images(app) -> None:
    """The labeling app shows images by presigned GETs in <img> elements: no CORS grant to any origin."""
    assert resolved_resources(app)["RawBucket"]["Properties"]["CorsConfiguration"] == {}


def test_cors_rule_catches_a_missing_or_too_open_configuration(app) -> None:
    resources = copy.deepcopy(app.original["Resources"])
    del resources["RawBucket"]["Properties"]["CorsConfiguration"]
    assert cors_problems(resources, {"RawBucket"}) == [
        "RawBucket: no CORS rule letting the workers' browsers GET images (sms-cors-update)"
    ]
    resources["RawBucket"]["Properties"]["CorsConfiguration"] = {
        "CorsRules": [
            {"Id": "w", "AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["*"], "ExposedHeaders": []},
        ]
    }
    assert len(cors_problems(resources, {"RawBucket"})) == 2


# --------------------------------------------------------------------------------------------- workforce


def validate(app: SamApp, **parameters: str) -> Provisioner:
    provisioner = Provisioner(app, None, "loupe", "us-east-1", parameters)
    provisioner.check_parameters()
    return provisioner


def labeling_workteam(app: SamApp, provisioner: Provisioner) -> str:
    """WORKTEAM_ARN as CloudFormation resolves it for the labeling tasks function."""
    env = app.resources["LabelingTasksFunction"]["Properties"]["Environment"]["Variables"]
    return provisioner.resolver.resolve(env["WORKTEAM_ARN"])


def test_the_default_deploy_needs_no_workforce_and_gives_the_function_none(app) -> None:
    provisioner = validate(app)
    assert provisioner.resolver.parameters["LabelingService"] == "Loupe"
    assert labeling_workteam(app, provisioner) is _NO_VALUE


def test_a_ground_truth_deploy_that_names_no_workteam_is_refused_with_the_templates_message(app) -> None:
    with pytest.raises(TemplateError) as info:
        validate(app, LabelingService="GroundTruth")
    message = str(info.value)
    assert message.startswith("ValidationError: ")
    assert "LabelingService=GroundTruth needs WorkteamArn=" in message and "Mechanical Turk" in message


def test_a_private_workteam_is_what_the_labeling_function_gets(app) -> None:
    assert labeling_workteam(app, validate(app, LabelingService="GroundTruth", WorkteamArn=PRIVATE)) == PRIVATE


def test_verification_is_deployable_with_either_service(app) -> None:
    """EnableVerification used to need Ground Truth (a template rule refused it with the labeling app); the app
    now verifies with its own verify tasks, so a default deploy may turn it on."""
    validate(app, EnableVerification="true")
    validate(app, EnableVerification="true", LabelingService="GroundTruth", WorkteamArn=PRIVATE)
    assert "VerificationNeedsGroundTruth" not in app.original.get("Rules", {})


def input_free_of_pii(app: SamApp, provisioner: Provisioner) -> str:
    env = app.resources["LabelingTasksFunction"]["Properties"]["Environment"]["Variables"]
    return str(provisioner.resolver.resolve(env["INPUT_FREE_OF_PII"]))


def test_the_pii_statement_is_the_deployers_and_off_by_default(app) -> None:
    """The template used to declare the images free of PII on every deployer's behalf."""
    assert input_free_of_pii(app, validate(app, LabelingService="GroundTruth", WorkteamArn=PRIVATE)) == "false"
    stated = validate(app, LabelingService="GroundTruth", WorkteamArn=PRIVATE, InputFreeOfPersonalInformation="true")
    assert input_free_of_pii(app, stated) == "true"


def test_the_public_workforce_parameters_are_gone(app) -> None:
    """Mechanical Turk closed on September 30, 2026: no parameter offers it any more."""
    assert not {"UsePublicWorkforce", "PublicWorkforcePriceInCents"} & set(app.original["Parameters"])


@pytest.mark.parametrize("value", [PUBLIC, "inspectors", "arn:aws:iam::123456789012:role/x"])
def test_the_workteam_parameter_takes_only_a_private_or_vendor_workteam(app, value) -> None:
    """The public workforce's ARN (Mechanical Turk, closed) is not a workteam Loupe takes."""
    with pytest.raises(TemplateError, match="Parameter 'WorkteamArn' failed to satisfy constraint"):
        validate(app, WorkteamArn=value)


def test_a_rule_function_the_local_aws_cannot_evaluate_is_not_passed(app) -> None:
    broken = copy.deepcopy(app)
    broken.transformed["Rules"] = {
        "Odd": {"Assertions": [{"Assert": {"Fn::Contains": [["a"], {"Ref": "Environment"}]}}]}
    }
    with pytest.raises(TemplateError, match="not evaluable locally"):
        validate(broken)


def test_no_samconfig_environment_opts_into_the_public_workforce() -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    for env in ("default", "dev", "prod"):
        overrides = config[env]["deploy"]["parameters"]["parameter_overrides"]
        assert "UsePublicWorkforce" not in overrides, env


def test_the_local_stack_deploys_with_a_private_workteam_only_for_ground_truth(app) -> None:
    """`loupe local up` deploys the default (the labeling app, no workteam); a Ground Truth local stack without a
    workteam names the local private workteam, so it passes the rules."""
    from loupe_local.host.runtime import LocalRuntime

    default = LocalRuntime(parameters={"TrainingEpochs": "1"}).parameters
    assert "WorkteamArn" not in default and "LabelingService" not in default
    validate(app, **default)
    parameters = LocalRuntime(parameters={"LabelingService": "GroundTruth"}).parameters
    assert ":workteam/private-crowd/" in parameters["WorkteamArn"]
    assert labeling_workteam(app, validate(app, **parameters)) == parameters["WorkteamArn"]


def test_a_claim_bound_over_the_state_quota_is_refused_like_cloudformation_does(app) -> None:
    """LabelingMaxPerJob above its MaxValue (the run state's 256 KiB quota, tests/unit/labeling/test_state_size.py)
    is a ValidationError before anything is created, as CloudFormation refuses a Number outside MinValue/MaxValue."""
    validate(app, LabelingMaxPerJob="1000")
    with pytest.raises(TemplateError, match="'LabelingMaxPerJob' must be a number not greater than 1000"):
        validate(app, LabelingMaxPerJob="5000")
    with pytest.raises(TemplateError, match="'LabelingMaxPerJob' must be a number not less than 1"):
        validate(app, WorkteamArn=PRIVATE, LabelingMaxPerJob="0")
    with pytest.raises(TemplateError, match="'LabelingThreshold' must be a number"):
        validate(app, WorkteamArn=PRIVATE, LabelingThreshold="many")
