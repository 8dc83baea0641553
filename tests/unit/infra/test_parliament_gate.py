"""`make lint-infra` runs parliament, an IAM policy linter, on every IAM policy of template.yaml.

The gate itself runs in scripts/lint_infra.sh (parliament lives in its own hashed tool venv, not in .venv); these
tests hold what it relies on: the extractor finds every policy of the SAM-transformed template, each suppression
carries a reason, parliament is installed from its hashed lock, and Loupe's own inline policies say their Version
(the one suppression that covers every file, NO_VERSION, is for SAM's generated documents only).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from loupe_local.template import load_yaml

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "scripts"


def _extractor() -> Any:
    spec = importlib.util.spec_from_file_location("lint_infra_iam", SCRIPTS / "lint_infra_iam.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def extracted() -> dict[str, dict[str, Any]]:
    return _extractor().policies(REPO / "template.yaml")


def test_every_iam_policy_of_the_transformed_template_is_linted(extracted) -> None:
    # the hand-written roles, and the roles SAM generates for functions and state machines
    assert "GreengrassTokenExchangeRole.loupe-edge-devices" in extracted
    assert "SageMakerExecutionRole.loupe-sagemaker" in extracted
    assert any(name.startswith("FeedbackFunctionRole.") for name in extracted)
    assert any(name.startswith("EdgeDeploymentStateMachineRole.") for name in extracted)
    text = json.dumps(extracted)
    # intrinsics are resolved to samples: nothing CloudFormation-shaped reaches parliament
    assert "Fn::" not in text and '"Ref"' not in text
    assert re.search(r"arn:aws:sagemaker:us-east-1:\d{12}:feature-group/", text)


def own_policies(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The policy documents written in template.yaml (not SAM's policy templates)."""
    found: dict[str, dict[str, Any]] = {}
    for logical_id, res in template["Resources"].items():
        props = res.get("Properties", {})
        for i, policy in enumerate(props.get("Policies", []) if isinstance(props.get("Policies"), list) else []):
            if not isinstance(policy, dict):
                continue
            if "Statement" in policy:  # SAM: an inline policy document
                found[f"{logical_id}[{i}]"] = policy
            elif "PolicyDocument" in policy:  # AWS::IAM::Role
                found[f"{logical_id}.{policy.get('PolicyName')}"] = policy["PolicyDocument"]
        if res.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            found[logical_id] = props["PolicyDocument"]
    return found


def versionless(template: dict[str, Any]) -> list[str]:
    return sorted(name for name, doc in own_policies(template).items() if doc.get("Version") != "2012-10-17")


def test_loupes_own_policies_say_their_version() -> None:
    # without Version IAM reads a policy as 2008-10-17, where ${...} policy variables are literal text
    template = load_yaml(REPO / "template.yaml")
    assert len(own_policies(template)) > 15
    assert versionless(template) == []
    bad = copy.deepcopy(template)
    doc = next(d for d in own_policies(bad).values() if "Version" in d)
    del doc["Version"]
    assert len(versionless(bad)) == 1


def test_each_suppression_names_a_finding_and_says_why() -> None:
    entries = yaml.safe_load((SCRIPTS / "parliament_suppressions.yaml").read_text())
    assert entries
    for entry in entries:
        assert re.fullmatch(r"[A-Z_]+", entry["issue"]), entry
        re.compile(entry["policy"])
        assert len(entry["reason"].split()) >= 10, f"{entry['issue']}: say why it stays"


def test_the_gate_installs_parliament_from_its_hashed_lock_and_runs_it() -> None:
    script = (SCRIPTS / "lint_infra.sh").read_text()
    assert "PARLIAMENT_LOCK=scripts/tools/parliament.txt" in script
    assert re.search(r"pip install [^\n]*--require-hashes --no-deps -r \"\$lock\"", script)
    assert 'locked_venv "$TOOLS/parliament" "$PARLIAMENT_LOCK"' in script
    assert re.search(r'gate "parliament[^"]*" parliament_lint', script)
    assert "scripts/lint_infra_iam.py" in script and "scripts/parliament_suppressions.yaml" in script
