"""What the local provisioner validates before (or while) it creates resources, as CloudFormation would refuse a
deploy: parameters' AllowedPattern, Number parameters' MinValue/MaxValue and the template's Rules, references to
resources the template lacks, and state machine tasks that invoke a function the template does not declare."""

from __future__ import annotations

import json
import re
from typing import Any

from loupe_local.provisioned import Provisioned
from loupe_local.template import Resolver, SamApp, TemplateError, references


def check_parameters(template: dict[str, Any], resolver: Resolver) -> None:
    """What CloudFormation validates before it creates anything (so a failure creates nothing): each String
    parameter's AllowedPattern (a whole-value match), then the template's Rules, whose failed assertion's
    AssertDescription is the deploy's ValidationError (AWSCloudFormation/latest/UserGuide/rules-section-structure).
    """
    for name, spec in template.get("Parameters", {}).items():
        pattern = spec.get("AllowedPattern")
        value = resolver.parameters.get(name)
        if spec.get("Type") == "Number":
            _check_number(name, spec, value)
        if pattern and spec.get("Type") == "String" and not re.fullmatch(pattern, str(value)):
            why = spec.get("ConstraintDescription")
            detail = f"failed to satisfy constraint: {why}" if why else f"must match pattern {pattern}"
            raise TemplateError(f"ValidationError: Parameter '{name}' {detail}")
    for rule_name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not _rule_value(resolver, rule_name, rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not _rule_value(resolver, rule_name, assertion["Assert"]):
                raise TemplateError(f"ValidationError: {assertion.get('AssertDescription') or rule_name}")


def _check_number(name: str, spec: dict[str, Any], value: Any) -> None:
    """A Number parameter is a number within its MinValue and MaxValue (AWSCloudFormation/latest/UserGuide/
    parameters-section-structure: "MaxValue: a numeric value that determines the largest numeric value you want to
    allow for Number types")."""
    if value is None or value == "":
        return
    try:
        number = float(str(value))
    except ValueError:
        raise TemplateError(f"ValidationError: Parameter '{name}' must be a number") from None
    low, high = spec.get("MinValue"), spec.get("MaxValue")
    if low is not None and number < float(low):
        raise TemplateError(f"ValidationError: Parameter '{name}' must be a number not less than {low}")
    if high is not None and number > float(high):
        raise TemplateError(f"ValidationError: Parameter '{name}' must be a number not greater than {high}")


def _rule_value(resolver: Resolver, rule_name: str, expression: Any) -> bool:
    value = resolver.resolve(expression)
    if not isinstance(value, bool):  # a rule function the local resolver lacks must not pass silently
        raise TemplateError(f"rule {rule_name}: {json.dumps(expression)} is not evaluable locally")
    return value


def check_references(app: SamApp, resources: dict[str, Any]) -> None:
    """A state machine or rule that names a function the template lacks stops provisioning, by name."""
    known = set(resources) | set(app.transformed.get("Parameters", {}))
    for logical_id, res in resources.items():
        missing = {r for r in references(res.get("Properties", {})) if r not in known and not r.startswith("AWS::")}
        if missing:
            raise TemplateError(f"{logical_id} ({res['Type']}) refers to {sorted(missing)}, not in template.yaml")


def check_task_targets(logical_id: str, definition: dict[str, Any], done: dict[str, Provisioned]) -> None:
    """A Task state that invokes a function the template does not declare (by ARN or name) stops provisioning."""
    functions = {p.attrs.get("Arn") for p in done.values() if p.type == "AWS::Lambda::Function"}
    functions |= {p.ref for p in done.values() if p.type == "AWS::Lambda::Function"}

    def walk(states: dict[str, Any]) -> None:
        for state_name, state in states.items():
            target = (state.get("Parameters") or state.get("Arguments") or {}).get("FunctionName")
            if isinstance(target, str) and ":function:" in target and target.split(":$")[0] not in functions:
                raise TemplateError(
                    f"{logical_id}: state {state_name} invokes {target}, a function template.yaml does not declare"
                )
            for branch in state.get("Branches", []):
                walk(branch.get("States", {}))
            for key in ("Iterator", "ItemProcessor"):
                if key in state:
                    walk(state[key].get("States", {}))

    walk(definition.get("States", {}))
