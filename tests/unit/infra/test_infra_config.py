"""The deployment and gate configuration: samconfig.toml, the npm pin, the ASL rendering for asl-validator, and
the prerequisite messages of scripts/lint_infra.sh."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from loupe_local.template import load_yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
ENVIRONMENTS = ("default", "dev", "prod")


@pytest.fixture(scope="module")
def samconfig() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())


@pytest.fixture(scope="module")
def parameters() -> dict[str, Any]:
    return load_yaml(REPO_ROOT / "template.yaml")["Parameters"]


def _overrides(text: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in shlex.split(text)]
    return {k: v for k, v in pairs}


def test_samconfig_declares_the_three_environments_with_distinct_stacks(samconfig) -> None:
    assert samconfig["version"] == 0.1
    stacks = {env: samconfig[env]["global"]["parameters"]["stack_name"] for env in ENVIRONMENTS}
    assert len(set(stacks.values())) == 3, stacks
    # the README's Studio walkthrough names the default stack's model package group
    assert stacks["default"] == "loupe"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_deploys_with_the_capabilities_the_template_needs(samconfig, env) -> None:
    deploy = samconfig[env]["deploy"]["parameters"]
    assert set(deploy["capabilities"].split()) == {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}
    assert deploy["resolve_s3"] is True
    build = samconfig[env]["build"]["parameters"]
    assert build["cached"] is True and build["parallel"] is True


def test_prod_changes_are_confirmed_before_they_execute(samconfig) -> None:
    assert samconfig["prod"]["deploy"]["parameters"]["confirm_changeset"] is True


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_parameter_overrides_name_template_parameters_with_allowed_values(samconfig, parameters, env) -> None:
    overrides = _overrides(samconfig[env]["deploy"]["parameters"]["parameter_overrides"])
    assert overrides["Environment"] == ("prod" if env == "prod" else "dev")
    for name, value in overrides.items():
        assert name in parameters, f"{env}: {name} is not a parameter of template.yaml"
        spec = parameters[name]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], f"{env}: {name}={value}"
        if spec.get("Type") == "Number":
            number = float(value)
            if "MinValue" in spec:
                assert number >= float(spec["MinValue"]), f"{env}: {name}={value}"


def test_asl_validator_is_pinned_exactly_and_locked() -> None:
    package = json.loads((REPO_ROOT / "package.json").read_text())
    pinned = package["devDependencies"]["asl-validator"]
    assert pinned[0].isdigit(), f"asl-validator must be pinned exactly, not {pinned}"
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/asl-validator"]
    assert locked["version"] == pinned
    assert locked["integrity"].startswith("sha512-")


# --------------------------------------------------------------------------------------------- ASL rendering


def _render(template: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "lint_infra_asl.py"), str(template), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_asl_render_gives_step_functions_the_substituted_definitions(tmp_path: Path) -> None:
    result = _render(REPO_ROOT / "template.yaml", tmp_path)
    assert result.returncode == 0, result.stderr
    rendered = {p.name: p.read_text() for p in tmp_path.glob("*.asl.json")}
    wired = {p.name for p in (REPO_ROOT / "statemachines").glob("*.asl.json")}
    assert {name.split(".", 1)[1] for name in rendered} == wired
    for name, text in rendered.items():
        assert "${" not in text, name
        json.loads(text)
    labeling = json.loads(rendered["LabelingStateMachine.labeling.asl.json"])
    function_names = [
        s.get("Parameters", {}).get("FunctionName") for s in labeling["States"].values() if s.get("Type") == "Task"
    ]
    lambda_arn = "arn:aws:lambda:us-east-1:123456789012:function:loupe-LabelingTasksFunction"
    assert lambda_arn in function_names


def _write_template(root: Path, asl: str, substitutions: dict[str, Any]) -> Path:
    (root / "statemachines").mkdir()
    (root / "statemachines" / "m.asl.json").write_text(asl)
    template = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Parameters": {"Timeout": {"Type": "Number", "Default": 30}},
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic"},
            "Machine": {
                "Type": "AWS::Serverless::StateMachine",
                "Properties": {
                    "DefinitionUri": "statemachines/m.asl.json",
                    "DefinitionSubstitutions": substitutions,
                },
            },
        },
    }
    path = root / "template.yaml"
    path.write_text(json.dumps(template))  # JSON is YAML
    return path


def test_asl_render_resolves_parameters_and_resource_arns(tmp_path: Path) -> None:
    asl = (
        '{"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": ${Timeout}, "Next": "N"}, '
        '"N": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", '
        '"Parameters": {"TopicArn": "${TopicArn}", "Message": "m"}, "End": true}}}'
    )
    template = _write_template(tmp_path, asl, {"Timeout": {"Ref": "Timeout"}, "TopicArn": {"Ref": "Topic"}})
    out = tmp_path / "out"
    out.mkdir()
    result = _render(template, out)
    assert result.returncode == 0, result.stderr
    definition = json.loads((out / "Machine.m.asl.json").read_text())
    assert definition["States"]["W"]["Seconds"] == 30
    assert definition["States"]["N"]["Parameters"]["TopicArn"] == "arn:aws:sns:us-east-1:123456789012:loupe-Topic"


def test_asl_render_names_an_uncovered_placeholder(tmp_path: Path) -> None:
    asl = '{"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "${Missing}", "End": true}}}'
    template = _write_template(tmp_path, asl, {})
    out = tmp_path / "out"
    out.mkdir()
    result = _render(template, out)
    assert result.returncode == 1
    assert "Missing" in result.stderr and "DefinitionSubstitutions" in result.stderr
    assert "Traceback" not in result.stderr


def test_asl_render_names_a_substitution_that_breaks_the_json(tmp_path: Path) -> None:
    asl = '{"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": ${Topic}, "End": true}}}'
    template = _write_template(tmp_path, asl, {"Topic": {"Ref": "Topic"}})
    out = tmp_path / "out"
    out.mkdir()
    result = _render(template, out)
    assert result.returncode == 1
    assert "m.asl.json after DefinitionSubstitutions is not JSON" in result.stderr


# --------------------------------------------------------------------------------------------- prerequisites


def test_tools_without_node_says_how_to_install_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "lint_infra.sh"), "tools"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "missing: node" in result.stderr and "scripts/install_prereqs.sh" in result.stderr


def test_tools_without_python312_says_how_to_install_it(tmp_path: Path) -> None:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("node and npm are prerequisites of the infrastructure gates (scripts/check_prereqs.sh node)")
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "lint_infra.sh"), "tools"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LOUPE_PYTHON312": str(tmp_path / "no-python")},
    )
    assert result.returncode == 1
    assert "missing: python3.12" in result.stderr and "pyenv install 3.12" in result.stderr
    assert "Traceback" not in result.stderr
