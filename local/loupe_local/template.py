"""template.yaml as the local AWS sees it: loaded, SAM-transformed offline, and resolvable.

The local runtime provisions exactly what template.yaml declares. This module reads the template (with the
short-form intrinsic tags), inlines the state machine definitions that SAM would upload, runs the SAM transform
(aws-sam-translator, offline) and evaluates the intrinsic functions the provisioner needs.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"
CODE_BUCKET = "loupe-local-code"


class TemplateError(RuntimeError):
    """template.yaml cannot be provisioned locally; the message says why."""


def load_yaml(path: Path) -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml

    try:
        node = cfn_yaml.load(str(path))
    except Exception as exc:  # cfn-lint raises its own matches for YAML errors
        raise TemplateError(f"{path}: cannot parse: {exc}") from exc
    return json.loads(json.dumps(node))  # plain dicts and lists


@dataclass
class FunctionCode:
    logical_id: str
    code_dir: Path
    handler: str


@dataclass
class SamApp:
    root: Path
    original: dict[str, Any]
    transformed: dict[str, Any]
    functions: dict[str, FunctionCode] = field(default_factory=dict)
    layer_dirs: list[Path] = field(default_factory=list)

    @property
    def resources(self) -> dict[str, Any]:
        return self.transformed.get("Resources", {})


class _ManagedPolicies:
    """Offline stand-in for the IAM lookup the SAM translator does for managed policy names."""

    def load(self) -> dict[str, str]:
        return _AnyPolicy()


class _AnyPolicy(dict):
    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"arn:aws:iam::aws:policy/{key}"

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        return self[key]


def load_sam_app(template_path: Path, parameters: dict[str, str] | None = None) -> SamApp:
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.public.exceptions import InvalidDocumentException
    from samtranslator.translator.translator import Translator

    template_path = Path(template_path).resolve()
    root = template_path.parent
    original = load_yaml(template_path)
    pre = copy.deepcopy(original)
    globals_fn = pre.get("Globals", {}).get("Function", {})
    functions: dict[str, FunctionCode] = {}
    layer_dirs: list[Path] = []
    for logical_id, res in pre.get("Resources", {}).items():
        props = res.setdefault("Properties", {})
        rtype = res.get("Type")
        if rtype == "AWS::Serverless::Function":
            code_uri = props.get("CodeUri", globals_fn.get("CodeUri"))
            handler = props.get("Handler", globals_fn.get("Handler"))
            if not isinstance(code_uri, str) or not handler:
                raise TemplateError(f"{logical_id}: CodeUri and Handler must be plain strings locally")
            code_dir = (root / code_uri).resolve()
            if not code_dir.is_dir():
                raise TemplateError(f"{logical_id}: CodeUri {code_uri} does not exist")
            functions[logical_id] = FunctionCode(logical_id, code_dir, handler)
            props["CodeUri"] = f"s3://{CODE_BUCKET}/{code_uri.strip('/')}.zip"
        elif rtype == "AWS::Serverless::LayerVersion":
            content = props.get("ContentUri")
            if isinstance(content, str):
                layer_dirs.append((root / content).resolve())
                props["ContentUri"] = f"s3://{CODE_BUCKET}/{content.strip('/')}.zip"
        elif rtype == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            asl_path = root / props.pop("DefinitionUri")
            if not asl_path.is_file():
                raise TemplateError(f"{logical_id}: DefinitionUri {asl_path} does not exist")
            try:
                props["Definition"] = json.loads(asl_path.read_text())
            except json.JSONDecodeError as exc:
                raise TemplateError(f"{asl_path}: not valid JSON: {exc}") from exc
    values = {"AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT_ID, "AWS::Partition": "aws"}
    values.update(parameters or {})
    try:
        translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=values["AWS::Region"]))
        transformed = translator.translate(pre, parameter_values=values, get_managed_policy_map=_ManagedPolicies().load)
    except InvalidDocumentException as exc:
        causes = "; ".join(str(c) for c in getattr(exc, "causes", [])) or str(exc)
        raise TemplateError(f"SAM transform failed: {causes}") from exc
    transformed = json.loads(json.dumps(transformed))
    return SamApp(root, original, transformed, functions, layer_dirs)


# --------------------------------------------------------------------------------------------- intrinsics

_SUB_VAR = re.compile(r"\$\{([^}!]+)\}")


class Resolver:
    """Evaluates CloudFormation intrinsic functions against known parameters and provisioned resources."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, Any],
        stack_name: str,
        region: str,
        ref: Callable[[str], Any],
        get_att: Callable[[str, str], Any],
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self._ref = ref
        self._get_att = get_att
        self.parameters: dict[str, Any] = {}
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, spec.get("Default"))
            if value is None:
                raise TemplateError(f"parameter {name} has no default and no value was given")
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            self.parameters[name] = value
        self.pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/local",
        }
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = self.template.get("Conditions", {}).get(name)
            if spec is None:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(spec))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self._ref(name)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            out = [self.resolve(v) for v in value]
            return [v for v in out if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            fn = _INTRINSICS.get(key)
            if fn is not None:
                return fn(self, arg)
        resolved: dict[str, Any] = {}
        for k, v in value.items():
            r = self.resolve(v)
            if r is not _NO_VALUE:
                resolved[k] = r
        return resolved

    def sub(self, text: str, variables: dict[str, Any] | None = None) -> str:
        variables = variables or {}

        def repl(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] not in self.pseudo:
                logical, attr = name.split(".", 1)
                return str(self._get_att(logical, attr))
            value = self.ref(name)
            return ",".join(value) if isinstance(value, list) else str(value)

        return _SUB_VAR.sub(repl, text).replace("${!", "${")


class _NoValue:
    pass


_NO_VALUE = _NoValue()


def _fn_ref(r: Resolver, arg: Any) -> Any:
    value = r.ref(arg)
    return _NO_VALUE if value is None and arg == "AWS::NoValue" else value


def _fn_get_att(r: Resolver, arg: Any) -> Any:
    if isinstance(arg, str):
        arg = arg.split(".", 1)
    return r._get_att(arg[0], r.resolve(arg[1]))


def _fn_sub(r: Resolver, arg: Any) -> Any:
    if isinstance(arg, str):
        return r.sub(arg)
    text, variables = arg
    return r.sub(text, {k: r.resolve(v) for k, v in variables.items()})


def _fn_join(r: Resolver, arg: Any) -> Any:
    sep, items = arg
    items = r.resolve(items)
    return sep.join(str(i) for i in items)


def _fn_if(r: Resolver, arg: Any) -> Any:
    name, yes, no = arg
    return r.resolve(yes if r.condition(name) else no)


def _fn_select(r: Resolver, arg: Any) -> Any:
    index, items = arg
    return r.resolve(items)[int(r.resolve(index))]


def _fn_split(r: Resolver, arg: Any) -> Any:
    sep, text = arg
    return str(r.resolve(text)).split(sep)


def _fn_find_in_map(r: Resolver, arg: Any) -> Any:
    name, key1, key2 = (r.resolve(a) for a in arg)
    return r.template["Mappings"][name][key1][key2]


_INTRINSICS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Ref": _fn_ref,
    "Fn::GetAtt": _fn_get_att,
    "Fn::Sub": _fn_sub,
    "Fn::Join": _fn_join,
    "Fn::If": _fn_if,
    "Fn::Select": _fn_select,
    "Fn::Split": _fn_split,
    "Fn::FindInMap": _fn_find_in_map,
    "Fn::Equals": lambda r, a: r.resolve(a[0]) == r.resolve(a[1]),
    "Fn::Not": lambda r, a: not r.resolve(a[0]),
    "Fn::And": lambda r, a: all(r.resolve(x) for x in a),
    "Fn::Or": lambda r, a: any(r.resolve(x) for x in a),
    "Condition": lambda r, a: r.condition(a),
    "Fn::GetAZs": lambda r, a: [f"{r.region}a", f"{r.region}b"],
    "Fn::Base64": lambda r, a: r.resolve(a),
}


def references(value: Any) -> set[str]:
    """Logical ids a value refers to (Ref, GetAtt, Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= references(v)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg.split(".")[0] if isinstance(arg, str) else arg[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                local_vars = {} if isinstance(arg, str) else arg[1]
                for name in _SUB_VAR.findall(text):
                    if name.strip() not in local_vars:
                        found.add(name.split(".")[0].strip())
                if not isinstance(arg, str):
                    found |= references(arg[1])
            else:
                found |= references(arg)
    return found


def creation_order(resources: dict[str, Any]) -> list[str]:
    """Logical ids in an order where every resource comes after what it refers to."""
    deps: dict[str, set[str]] = {}
    for logical_id, res in resources.items():
        refs = references(res.get("Properties", {})) | references(res.get("Condition", []))
        depends_on = res.get("DependsOn", [])
        refs |= set([depends_on] if isinstance(depends_on, str) else depends_on)
        deps[logical_id] = {d for d in refs if d in resources and d != logical_id}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise TemplateError(f"circular reference: {' -> '.join([*path, node])}")
        state[node] = 1
        for dep in sorted(deps[node]):
            visit(dep, [*path, node])
        state[node] = 2
        order.append(node)

    for node in sorted(resources):
        visit(node, [])
    return order
