"""template.yaml as the local AWS reads it: SAM transform offline, intrinsics, dependency order, bad references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loupe_local.template import Resolver, TemplateError, creation_order, load_sam_app, references


@pytest.fixture(scope="module")
def app(repo_root: Path):
    return load_sam_app(repo_root / "template.yaml")


def test_every_serverless_function_is_found_with_its_code(app) -> None:
    functions = {lid for lid, r in app.original["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions and set(app.functions) == functions
    for code in app.functions.values():
        module = code.handler.rpartition(".")[0].replace(".", "/") + ".py"
        assert (code.code_dir / module).is_file(), code


def test_state_machines_are_inlined_from_their_asl_files(app, repo_root: Path) -> None:
    machines = [r for r in app.resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert len(machines) == 3
    for machine in machines:
        assert "DefinitionString" in machine["Properties"] and "DefinitionS3Location" not in machine["Properties"]


def test_layer_dir_is_on_the_local_path(app, repo_root: Path) -> None:
    assert repo_root / "layers" / "common" in app.layer_dirs


def _resolver(template: dict, refs: dict, atts: dict) -> Resolver:
    return Resolver(template, {}, "stk", "eu-west-1", refs.__getitem__, lambda lid, a: atts[(lid, a)])


def test_intrinsics_resolve_like_cloudformation() -> None:
    template = {
        "Parameters": {
            "Env": {"Type": "String", "Default": "dev"},
            "L": {"Type": "CommaDelimitedList", "Default": "a,b"},
        },
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]}},
    }
    r = _resolver(template, {"Bucket": "bkt"}, {("Fn", "Arn"): "arn:fn"})
    assert r.resolve({"Fn::Sub": "${AWS::StackName}-${Bucket}-${Fn.Arn}-${!Literal}"}) == "stk-bkt-arn:fn-${Literal}"
    assert r.resolve({"Fn::Sub": ["${X}/${Env}", {"X": {"Ref": "Bucket"}}]}) == "bkt/dev"
    assert r.resolve({"Fn::Join": [",", {"Ref": "L"}]}) == "a,b"
    assert r.resolve({"Fn::If": ["IsProd", 1, 2]}) == 2
    assert r.resolve({"Fn::Select": [1, {"Fn::Split": ["/", "x/y/z"]}]}) == "y"
    assert r.resolve({"k": {"Ref": "AWS::NoValue"}, "j": 1}) == {"j": 1}


def test_sub_variables_of_policy_templates_are_not_resource_references() -> None:
    value = {"Fn::Sub": ["arn:aws:s3:::${bucketName}/${Other}", {"bucketName": {"Ref": "RawBucket"}}]}
    assert references(value) == {"Other", "RawBucket"}


def test_creation_order_puts_dependencies_first_and_names_cycles() -> None:
    resources = {
        "B": {"Type": "T", "Properties": {"x": {"Fn::GetAtt": ["A", "Arn"]}}},
        "A": {"Type": "T", "Properties": {}},
        "C": {"Type": "T", "DependsOn": "B"},
    }
    order = creation_order(resources)
    assert order.index("A") < order.index("B") < order.index("C")
    with pytest.raises(TemplateError, match="circular"):
        creation_order({"A": {"Type": "T", "Properties": {"Ref": "B"}}, "B": {"Type": "T", "Properties": {"Ref": "A"}}})


def test_missing_asl_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  M:\n    Type: AWS::Serverless::StateMachine\n"
        "    Properties:\n      DefinitionUri: statemachines/nope.asl.json\n"
    )
    with pytest.raises(TemplateError, match="nope.asl.json"):
        load_sam_app(tmp_path / "template.yaml")


def test_definition_substitutions_survive_the_transform(app) -> None:
    machine = app.resources["LabelingStateMachine"]["Properties"]
    assert "LabelingTasksFunctionArn" in machine["DefinitionSubstitutions"]
    assert "${LabelingTasksFunctionArn}" in json.dumps(machine["DefinitionString"])
