"""``loupe preflight``'s command line: the deploy's inputs read as ``sam deploy`` reads them, one line per finding,
the exit status. (The checks themselves run against the local AWS: tests/integration/local/test_preflight.py.)"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from loupe_local import preflight
from loupe_local.cli import main
from loupe_local.preflight_checks import Finding
from loupe_local.preflight_plan import PlanError, StackPlan, parse_overrides, plan, read_samconfig

FINDINGS = [
    Finding("template", "OK", "parameters satisfy the template's patterns, ranges and rules"),
    Finding("ground truth", "WARN", "no labeling job in this account and Region", "AWS: note"),
    Finding("greengrass service role", "FAIL", "no Greengrass service role is associated", "associate one"),
]


def test_each_finding_is_one_line_and_a_fail_exits_1() -> None:
    out = io.StringIO()
    status = preflight.report(FINDINGS, "loupe", "eu-west-1", as_json=False, out=out)
    assert status == 1
    assert out.getvalue().splitlines() == [
        "loupe preflight: stack loupe in eu-west-1",
        "OK   template: parameters satisfy the template's patterns, ranges and rules",
        "WARN ground truth: no labeling job in this account and Region -> AWS: note",
        "FAIL greengrass service role: no Greengrass service role is associated -> associate one",
        "loupe preflight: 1 FAIL, 1 WARN",
    ]


def test_warnings_alone_exit_0() -> None:
    out = io.StringIO()
    assert preflight.report(FINDINGS[:2], "loupe", "eu-west-1", as_json=False, out=out) == 0
    assert out.getvalue().splitlines()[-1] == "loupe preflight: 0 FAIL, 1 WARN"


def test_json_is_one_document_with_every_finding() -> None:
    out = io.StringIO()
    assert preflight.report(FINDINGS, "loupe", "eu-west-1", as_json=True, out=out) == 1
    doc = json.loads(out.getvalue())
    assert doc["ok"] is False
    assert doc["stack"] == "loupe" and doc["region"] == "eu-west-1"
    assert doc["findings"][2] == {
        "check": "greengrass service role",
        "status": "FAIL",
        "found": "no Greengrass service role is associated",
        "action": "associate one",
    }


def test_parameter_overrides_take_both_sam_syntaxes() -> None:
    assert parse_overrides('Environment=prod NotificationEmail="ops team@example.com"') == {
        "Environment": "prod",
        "NotificationEmail": "ops team@example.com",
    }
    assert parse_overrides(["ParameterKey=LabelClasses,ParameterValue=scratch,dent", "AutoApprove=false"]) == {
        "LabelClasses": "scratch,dent",
        "AutoApprove": "false",
    }
    with pytest.raises(PlanError, match="expected KEY=VALUE"):
        parse_overrides("Environment")


def test_samconfig_environment_is_read_like_sam_deploy(repo_root: Path) -> None:
    dev = read_samconfig(repo_root / "samconfig.toml", "dev")
    assert dev.stack_name == "loupe-dev"
    assert dev.overrides["TrainingUseSpot"] == "true"
    with pytest.raises(PlanError, match=r"has no environment \[staging\]"):
        read_samconfig(repo_root / "samconfig.toml", "staging")


def _captured_plan(monkeypatch: pytest.MonkeyPatch) -> list[StackPlan]:
    seen: list[StackPlan] = []

    def fake_run_all(stack: StackPlan, clients: Any) -> list[Finding]:
        seen.append(stack)
        return [Finding("template", "OK", "fine")]

    monkeypatch.setattr(preflight, "run_all", fake_run_all)
    return seen


def test_without_overrides_the_command_uses_the_samconfig_environment(
    monkeypatch: pytest.MonkeyPatch, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo_root)
    seen = _captured_plan(monkeypatch)
    assert main(["preflight", "--region", "eu-west-1", "--config-env", "prod"]) == 0
    assert seen[0].stack_name == "loupe-prod"
    assert seen[0].parameters["LabelingThreshold"] == "200"
    assert "loupe preflight: stack loupe-prod in eu-west-1" in capsys.readouterr().out


def test_overrides_on_the_command_line_replace_samconfigs(monkeypatch: pytest.MonkeyPatch, repo_root: Path) -> None:
    monkeypatch.chdir(repo_root)
    seen = _captured_plan(monkeypatch)
    argv = [
        "preflight",
        "--region",
        "eu-west-1",
        "--config-env",
        "prod",
        "--parameter-overrides",
        "LabelingService=GroundTruth",
    ]
    assert main(argv) == 0
    assert seen[0].parameters["LabelingThreshold"] == 50  # the template's default, not prod's 200
    assert seen[0].labeling_service == "GroundTruth"


def test_the_default_stack_plans_no_ground_truth(monkeypatch: pytest.MonkeyPatch, repo_root: Path) -> None:
    """preflight reads LabelingService from the template: its default (Loupe) needs no Ground Truth check."""
    monkeypatch.chdir(repo_root)
    seen = _captured_plan(monkeypatch)
    assert main(["preflight", "--region", "eu-west-1"]) == 0
    assert seen[0].labeling_service == "Loupe"
    assert seen[0].parameters["LabelingService"] == "Loupe"


def test_a_parameter_the_template_lacks_is_refused_before_any_call(
    monkeypatch: pytest.MonkeyPatch, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo_root)
    seen = _captured_plan(monkeypatch)
    assert main(["preflight", "--region", "eu-west-1", "--parameter-overrides", "TrainingInstanceTyp=ml.m5.large"]) == 2
    assert seen == []
    assert "template.yaml does not have: TrainingInstanceTyp" in capsys.readouterr().err


def test_the_plan_sums_what_the_template_reserves_and_names_its_instance_types(repo_root: Path) -> None:
    stack = plan(
        repo_root / "template.yaml", "loupe", {"WorkteamArn": "arn:x", "TrainingUseSpot": "false"}, "eu-west-1"
    )
    assert stack.reserved_concurrency["LabelingTriggerFunction"] == 1  # its own value over the Globals' 10
    assert sum(stack.reserved_concurrency.values()) == 1 + 10 * (len(stack.reserved_concurrency) - 1)
    assert (stack.training_instance_type, stack.spot_training) == ("ml.g4dn.xlarge", False)
    assert stack.processing_instance_type == "ml.m5.xlarge"  # the pipeline definition's default
    assert (stack.thing_group_name, stack.thing_group_logical_id) == ("loupe-edge-fleet", None)  # an existing group


def test_a_group_resource_switched_off_by_its_condition_means_an_existing_group(repo_root: Path) -> None:
    """The template's CreateThingGroup decides: by default the stack deploys to an existing, shared group."""
    overrides = {"WorkteamArn": "arn:x", "ThingGroupName": "line-3"}
    existing = plan(repo_root / "template.yaml", "loupe", overrides, "eu-west-1")
    created = plan(repo_root / "template.yaml", "loupe", {**overrides, "CreateThingGroup": "true"}, "eu-west-1")
    assert created.thing_group_logical_id == "FleetThingGroup"
    assert (existing.thing_group_name, existing.thing_group_logical_id) == ("line-3", None)
