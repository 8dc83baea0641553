"""What a ``sam deploy`` of template.yaml would ask of an account: ``loupe preflight``'s input.

The parameters come as ``sam deploy`` takes them: ``--parameter-overrides`` (``Key=Value`` pairs, or
``ParameterKey=Key,ParameterValue=Value``) or, without it, the ``parameter_overrides`` of samconfig.toml's
``[<env>.deploy.parameters]``; the template's defaults fill in the rest. Nothing here calls AWS.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loupe_local.host.provision_checks import check_parameters
from loupe_local.template import Resolver, TemplateError, load_yaml

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
_PROCESSING_DEFAULT = re.compile(r'"DefaultValue":\s*"(ml\.[\w.]+)",\s*"Name":\s*"ProcessingInstanceType"')


class PlanError(ValueError):
    """The deploy's inputs cannot be read (a bad override, a missing samconfig environment); the message says why."""


@dataclass(frozen=True)
class DeployConfig:
    """What samconfig.toml (or the command line) says about the deploy: stack, Region, parameter overrides."""

    stack_name: str
    region: str | None
    overrides: dict[str, str]


@dataclass
class StackPlan:
    stack_name: str
    parameters: dict[str, Any]
    reserved_concurrency: dict[str, int] = field(default_factory=dict)  # logical id -> units
    training_instance_type: str = ""
    spot_training: bool = False
    processing_instance_type: str | None = None
    labeling_service: str = "Loupe"
    thing_group_name: str = ""
    thing_group_logical_id: str | None = None  # the AWS::IoT::ThingGroup the stack creates; None: an existing group
    template_error: str | None = None  # what CloudFormation would refuse before creating anything

    @property
    def workteam_arn(self) -> str:
        return str(self.parameters.get("WorkteamArn") or "")


def parse_overrides(text: str | list[str] | None) -> dict[str, str]:
    """``sam deploy --parameter-overrides`` syntax: ``A=1 B="two words"`` or ``ParameterKey=A,ParameterValue=1``."""
    if not text:
        return {}
    tokens = [t for item in ([text] if isinstance(text, str) else text) for t in shlex.split(item)]
    out: dict[str, str] = {}
    for token in tokens:
        if token.startswith("ParameterKey="):
            match = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", token, re.DOTALL)
            if not match:
                raise PlanError(f"parameter override {token!r}: expected ParameterKey=KEY,ParameterValue=VALUE")
            out[match.group(1)] = match.group(2)
            continue
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise PlanError(f"parameter override {token!r}: expected KEY=VALUE")
        out[key] = value
    return out


def read_samconfig(path: Path, env: str) -> DeployConfig:
    """The deploy settings ``sam deploy --config-env <env>`` reads: ``[<env>.deploy.parameters]`` over
    ``[<env>.global.parameters]``."""
    if not path.is_file():
        return DeployConfig(stack_name="", region=None, overrides={})
    try:
        config = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: not valid TOML: {exc}") from exc
    if env not in config:
        raise PlanError(f"{path} has no environment [{env}] (it has: {', '.join(sorted(config)) or 'none'})")
    section = config[env]
    merged = {**section.get("global", {}).get("parameters", {}), **section.get("deploy", {}).get("parameters", {})}
    return DeployConfig(
        stack_name=str(merged.get("stack_name") or ""),
        region=merged.get("region"),
        overrides=parse_overrides(merged.get("parameter_overrides")),
    )


def plan(template_path: Path, stack_name: str, overrides: dict[str, str], region: str) -> StackPlan:
    """Resolve the template with these parameters into what the checks need."""
    template = load_yaml(template_path)
    unknown = sorted(set(overrides) - set(template.get("Parameters", {})))
    if unknown:
        raise PlanError(f"parameter overrides name parameters template.yaml does not have: {', '.join(unknown)}")

    def no_resources(*_: Any) -> Any:
        raise TemplateError("a rule or condition refers to a resource")

    resolver = Resolver(template, overrides, stack_name, region, no_resources, no_resources)
    out = StackPlan(stack_name=stack_name, parameters=dict(resolver.parameters))
    try:
        check_parameters(template, resolver)
    except TemplateError as exc:
        out.template_error = str(exc)
    params = resolver.parameters
    out.training_instance_type = str(params.get("TrainingInstanceType") or "")
    out.spot_training = str(params.get("TrainingUseSpot", "false")).lower() == "true"
    # template.yaml's LabelingService (default Loupe): only GroundTruth makes the Ground Truth check apply
    out.labeling_service = str(params.get("LabelingService") or "Loupe")
    out.thing_group_name = str(params.get("ThingGroupName") or "")
    globals_fn = template.get("Globals", {}).get("Function", {})
    for logical_id, res in template.get("Resources", {}).items():
        if "Condition" in res and not resolver.condition(res["Condition"]):
            continue
        props = res.get("Properties") or {}
        if res.get("Type") in FUNCTION_TYPES:
            value = props.get("ReservedConcurrentExecutions")
            if value is None and res["Type"] == "AWS::Serverless::Function":
                value = globals_fn.get("ReservedConcurrentExecutions")
            if value is not None:
                out.reserved_concurrency[logical_id] = int(resolver.resolve(value))
        elif res.get("Type") == "AWS::IoT::ThingGroup":
            out.thing_group_logical_id = logical_id
            out.thing_group_name = str(resolver.resolve(props.get("ThingGroupName")) or out.thing_group_name)
        elif res.get("Type") == "AWS::SageMaker::Pipeline":
            found = (m.group(1) for text in _strings(props) for m in [_PROCESSING_DEFAULT.search(text)] if m)
            out.processing_instance_type = next(found, None)
    return out


def _strings(value: Any) -> list[str]:
    """Every string inside a property value (a pipeline definition is a string inside Fn::Sub)."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [s for item in items for s in _strings(item)]
