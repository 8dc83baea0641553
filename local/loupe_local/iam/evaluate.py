"""IAM identity-policy evaluation, following the IAM User Guide.

Pages followed (IAM User Guide):
- "Policy evaluation logic" / "Determining whether a request is allowed or denied within an account":
  an explicit Deny in any applicable policy wins, else an Allow grants, else the request is implicitly denied.
- "IAM JSON policy elements: Action / NotAction / Resource / NotResource": action names are case-insensitive,
  ``*`` and ``?`` are wildcards; resource ARNs are case-sensitive and a wildcard does not span ARN segments.
- "IAM JSON policy elements: Condition operators": a key missing from the request context makes a condition
  false, except negated operators (true), ``...IfExists`` (true) and ``Null`` (tests presence).
- "Conditions with multiple context keys or values": operators AND, keys AND, values OR (NOR when negated);
  ``ForAllValues`` is true when the key is missing or every request value matches; ``ForAnyValue`` needs one match.

Identity policies (``Policy``, ``evaluate``) and resource-based policies (``ResourcePolicy``: Principal /
NotPrincipal; ``evaluate_with_resource_policy``: the same-account rule, an Allow in the identity OR the resource
policy grants, an explicit Deny in either wins; a service principal is granted by the resource policy only; an
account principal delegates to the account's identity policies) are evaluated here. Permission boundaries, session
policies, SCPs and KMS key policies are not. An operator this module does not know raises ``PolicyError`` naming it
when the policy is loaded, never a silent allow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

ContextValue = str | bool | int | float | Sequence[str]
Decision = Literal["Allow", "ExplicitDeny", "ImplicitDeny"]


class PolicyError(ValueError):
    """The policy cannot be evaluated (unknown operator, malformed statement); the message says which part."""


@dataclass(frozen=True)
class Request:
    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for actions AWS documents with no resource type
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    decision: Decision
    statements: tuple[str, ...] = ()  # "<policy>#<sid or index>" of the statements that decided

    @property
    def allowed(self) -> bool:
        return self.decision == "Allow"


# ----------------------------------------------------------------------------------------------- wildcards


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def arn_match(pattern: str, arn: str) -> bool:
    """Resource/ArnLike matching: each of the six colon-separated ARN parts is matched on its own."""
    if pattern == "*":
        return True
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return glob_match(pattern, arn)
    return all(glob_match(p, a) for p, a in zip(p_parts, a_parts, strict=True))


_POLICY_VAR = re.compile(r"\$\{([^}]+)\}")


def substitute(pattern: str, context: Mapping[str, ContextValue], variables: bool = True) -> str | None:
    """Policy variables in Resource and condition values ("IAM policy elements: Variables and tags").

    ``${*}``, ``${?}`` and ``${$}`` stand for the literal characters; ``${key, 'default'}`` takes the default when
    the key is missing. A missing key without a default makes the element not match (``None``).
    ``variables=False`` (a policy without ``"Version": "2012-10-17"``): ``${...}`` is literal text ("IAM JSON
    policy elements: Version": version 2008-10-17 does not support policy variables).
    """
    if not variables:
        return pattern
    missing = False

    def repl(match: re.Match[str]) -> str:
        nonlocal missing
        body = match.group(1).strip()
        if body in ("*", "?", "$"):
            return "\x00" + body  # escaped literal, undone after wildcard compilation below
        name, _, default = body.partition(",")
        value = _lookup(context, name.strip())
        if value is None or isinstance(value, (list, tuple)):
            default = default.strip()
            if default.startswith("'") and default.endswith("'") and len(default) >= 2:
                return default[1:-1]
            missing = True
            return ""
        return str(value)

    out = _POLICY_VAR.sub(repl, pattern)
    return None if missing else out


def _literal_aware_match(pattern: str, value: str, *, ignore_case: bool = False, arn: bool = False) -> bool:
    if "\x00" not in pattern:
        return arn_match(pattern, value) if arn else glob_match(pattern, value, ignore_case=ignore_case)
    # literal * ? $ from ${*} ${?} ${$}: compile by hand
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\x00":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.fullmatch("".join(out), value, flags) is not None


def _lookup(context: Mapping[str, ContextValue], key: str) -> ContextValue | None:
    """Condition key names are case-insensitive ("IAM JSON policy elements: Condition")."""
    if key in context:
        return context[key]
    lowered = key.lower()
    for k, v in context.items():
        if k.lower() == lowered:
            return v
    return None


# ----------------------------------------------------------------------------------------------- conditions

_NEGATED = {
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringNotLike",
    "NumericNotEquals",
    "ArnNotEquals",
    "ArnNotLike",
}


def _as_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _num(value: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise PolicyError(f"not a number: {value!r}") from exc


def _single(
    base: str, policy_value: str, value: str, context: Mapping[str, ContextValue], variables: bool = True
) -> bool:
    """One request value against one policy value, for the positive form of ``base``."""
    if base in ("StringEquals", "StringNotEquals"):
        return value == policy_value
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return value.lower() == policy_value.lower()
    if base in ("StringLike", "StringNotLike"):
        sub = substitute(policy_value, context, variables)
        return sub is not None and _literal_aware_match(sub, value)
    if base in ("ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"):
        sub = substitute(policy_value, context, variables)
        return sub is not None and _literal_aware_match(sub, value, arn=True)
    if base == "Bool":
        return value.lower() == policy_value.lower()
    numeric = {
        "NumericEquals": lambda a, b: a == b,
        "NumericNotEquals": lambda a, b: a == b,
        "NumericLessThan": lambda a, b: a < b,
        "NumericLessThanEquals": lambda a, b: a <= b,
        "NumericGreaterThan": lambda a, b: a > b,
        "NumericGreaterThanEquals": lambda a, b: a >= b,
    }
    if base in numeric:
        return numeric[base](_num(value), _num(policy_value))
    raise PolicyError(f"unsupported condition operator {base}")


_BASES = {
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Bool",
    "Null",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
}


def parse_operator(operator: str) -> tuple[str | None, str, bool]:
    """``ForAllValues:StringLikeIfExists`` -> ("ForAllValues", "StringLike", True); unknown -> PolicyError."""
    qualifier: str | None = None
    name = operator
    if ":" in operator:
        qualifier, name = operator.split(":", 1)
        if qualifier not in ("ForAllValues", "ForAnyValue"):
            raise PolicyError(f"unsupported condition set operator {qualifier!r} in {operator!r}")
    if_exists = name.endswith("IfExists") and name != "IfExists"
    base = name[: -len("IfExists")] if if_exists else name
    if base not in _BASES or (base == "Null" and (if_exists or qualifier)):
        raise PolicyError(f"unsupported condition operator {operator!r}")
    return qualifier, base, if_exists


def _values(raw: Any) -> list[str]:
    return [_as_str(v) for v in (raw if isinstance(raw, list) else [raw])]


def _condition_holds(
    operator: str, key: str, policy_values: list[str], context: Mapping[str, ContextValue], variables: bool = True
) -> bool:
    qualifier, base, if_exists = parse_operator(operator)
    present = _lookup(context, key)
    if base == "Null":
        want_missing = policy_values[0].lower() == "true"
        missing = present is None or (isinstance(present, (list, tuple)) and not present)
        return missing == want_missing
    if present is None or (isinstance(present, (list, tuple)) and not present):
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or base in _NEGATED
    request_values = [_as_str(v) for v in present] if isinstance(present, (list, tuple)) else [_as_str(present)]
    negated = base in _NEGATED

    def matches(value: str) -> bool:
        hit = any(_single(base, pv, value, context, variables) for pv in policy_values)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(matches(v) for v in request_values)
    if qualifier == "ForAnyValue":
        return any(matches(v) for v in request_values)
    # single-valued operator on a (possibly) multi-valued key: AWS matches any request value
    return any(matches(v) for v in request_values)


def conditions_hold(condition: Mapping[str, Any], context: Mapping[str, ContextValue], variables: bool = True) -> bool:
    for operator, keys in condition.items():
        if not isinstance(keys, Mapping):
            raise PolicyError(f"condition operator {operator!r} must map keys to values")
        for key, raw in keys.items():
            if not _condition_holds(operator, key, _values(raw), context, variables):
                return False
    return True


# ----------------------------------------------------------------------------------------------- statements


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class Statement:
    label: str
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    condition: Mapping[str, Any]
    variables: bool = True  # policy variables are substituted only in "Version": "2012-10-17" policies

    @classmethod
    def parse(cls, raw: Mapping[str, Any], label: str, variables: bool = True) -> Statement:
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError(f"{label}: Effect must be Allow or Deny, got {effect!r}")
        if ("Action" in raw) == ("NotAction" in raw):
            raise PolicyError(f"{label}: exactly one of Action and NotAction is required")
        if ("Resource" in raw) == ("NotResource" in raw):
            raise PolicyError(f"{label}: exactly one of Resource and NotResource is required (identity policy)")
        condition = raw.get("Condition") or {}
        for operator in condition:
            parse_operator(operator)  # unknown operators fail at load, naming the operator
        return cls(
            label,
            effect,
            tuple(_as_list(raw.get("Action"))),
            tuple(_as_list(raw.get("NotAction"))),
            tuple(_as_list(raw.get("Resource"))),
            tuple(_as_list(raw.get("NotResource"))),
            condition,
            variables,
        )

    def _action_matches(self, action: str) -> bool:
        if self.actions:
            return any(glob_match(p, action, ignore_case=True) for p in self.actions)
        return not any(glob_match(p, action, ignore_case=True) for p in self.not_actions)

    def _resource_matches(self, resource: str, context: Mapping[str, ContextValue]) -> bool:
        def hit(pattern: str) -> bool:
            sub = substitute(pattern, context, self.variables)
            return sub is not None and _literal_aware_match(sub, resource, arn=True)

        if self.resources:
            return any(hit(p) for p in self.resources)
        return not any(hit(p) for p in self.not_resources)

    def applies(self, request: Request) -> bool:
        return (
            self._action_matches(request.action)
            and self._resource_matches(request.resource, request.context)
            and conditions_hold(self.condition, request.context, self.variables)
        )


@dataclass(frozen=True)
class Policy:
    name: str
    statements: tuple[Statement, ...]

    @classmethod
    def parse(cls, name: str, document: Mapping[str, Any]) -> Policy:
        raw = document.get("Statement")
        if raw is None:
            raise PolicyError(f"{name}: no Statement")
        items = [raw] if isinstance(raw, Mapping) else list(raw)
        variables = document.get("Version") == "2012-10-17"
        return cls(
            name,
            tuple(Statement.parse(s, f"{name}#{s.get('Sid') or i}", variables) for i, s in enumerate(items)),
        )


def evaluate(policies: Iterable[Policy], request: Request) -> Result:
    """Identity-policy decision: explicit deny > allow > implicit deny."""
    allows: list[str] = []
    denies: list[str] = []
    for policy in policies:
        for statement in policy.statements:
            if statement.applies(request):
                (denies if statement.effect == "Deny" else allows).append(statement.label)
    if denies:
        return Result("ExplicitDeny", tuple(denies))
    if allows:
        return Result("Allow", tuple(allows))
    return Result("ImplicitDeny")


def evaluate_all(policies: Iterable[Policy], requests: Iterable[Request]) -> Result:
    """One API call authorized against several (action, resource) pairs: every one must be allowed."""
    policies = list(policies)
    decided: list[str] = []
    for request in requests:
        result = evaluate(policies, request)
        if not result.allowed:
            return result
        decided.extend(result.statements)
    return Result("Allow", tuple(decided))


# ----------------------------------------------------------------------------------------------- resource policies
#
# IAM User Guide, "IAM JSON policy elements: Principal" and "NotPrincipal"; "Policy evaluation logic" ("Evaluating
# identity-based policies with resource-based policies": within one account, an Allow in the identity-based policy
# OR in the resource-based policy is enough, an explicit Deny in either wins; "AWS service principals": a service
# has no identity-based policy, so only the resource-based policy can grant it).


@dataclass(frozen=True)
class Caller:
    """Who makes the request, as a resource policy's Principal element names it.

    ``service``: a service principal (``events.amazonaws.com``); else an IAM principal of ``account`` (``arn`` the
    assumed-role session ARN, ``role_arn`` its role)."""

    account: str
    arn: str = ""
    role_arn: str = ""
    service: str = ""

    @property
    def label(self) -> str:
        return self.service or self.arn


def _principal_values(raw: Any) -> dict[str, list[str]]:
    if raw == "*":
        return {"*": ["*"]}
    if not isinstance(raw, Mapping):
        raise PolicyError(f'Principal must be "*" or a map, got {raw!r}')
    return {str(kind): _as_list(value) for kind, value in raw.items()}


def principal_match(principal: Mapping[str, list[str]], caller: Caller) -> str | None:
    """How ``caller`` is named by a Principal element: ``"direct"`` (``*``, ``{"AWS": "*"}``, the role or the
    session ARN, the service), ``"account"`` (the account ID or its ``:root`` ARN: the account delegates to its
    identity-based policies) or None. ``"*"`` and ``{"AWS": "*"}`` are the same ("All principals")."""
    if principal.get("*") or "*" in principal.get("AWS", []):
        return "direct"
    if caller.service:
        return "direct" if caller.service in principal.get("Service", []) else None
    for value in principal.get("AWS", []):
        if value in (caller.arn, caller.role_arn) and value:
            return "direct"
        if value in (caller.account, f"arn:aws:iam::{caller.account}:root"):
            return "account"
    return None


@dataclass(frozen=True)
class ResourceStatement:
    statement: Statement
    principal: Mapping[str, list[str]] | None
    not_principal: Mapping[str, list[str]] | None

    def names(self, caller: Caller) -> str | None:
        if self.principal is not None:
            return principal_match(self.principal, caller)
        assert self.not_principal is not None
        return None if principal_match(self.not_principal, caller) else "direct"


@dataclass(frozen=True)
class ResourcePolicy:
    """A resource-based policy (bucket, queue, topic, function policy): statements with Principal/NotPrincipal."""

    name: str
    statements: tuple[ResourceStatement, ...]

    @classmethod
    def parse(cls, name: str, document: Mapping[str, Any]) -> ResourcePolicy:
        raw = document.get("Statement")
        if raw is None:
            raise PolicyError(f"{name}: no Statement")
        items = [raw] if isinstance(raw, Mapping) else list(raw)
        variables = document.get("Version") == "2012-10-17"
        out = []
        for i, item in enumerate(items):
            label = f"{name}#{item.get('Sid') or i}"
            if ("Principal" in item) == ("NotPrincipal" in item):
                raise PolicyError(f"{label}: exactly one of Principal and NotPrincipal is required (resource policy)")
            body = dict(item)
            if "Resource" not in body and "NotResource" not in body:
                body["Resource"] = "*"  # a key policy or a function policy may leave it to the resource itself
            out.append(
                ResourceStatement(
                    Statement.parse(body, label, variables),
                    _principal_values(item["Principal"]) if "Principal" in item else None,
                    _principal_values(item["NotPrincipal"]) if "NotPrincipal" in item else None,
                )
            )
        return cls(name, tuple(out))

    def evaluate(self, request: Request, caller: Caller) -> tuple[Result, bool]:
        """(decision of this policy alone, whether an Allow only delegates to the account's identity policies)."""
        allows: list[str] = []
        delegated: list[str] = []
        denies: list[str] = []
        for rs in self.statements:
            how = rs.names(caller)
            if how is None or not rs.statement.applies(request):
                continue
            if rs.statement.effect == "Deny":
                denies.append(rs.statement.label)
            elif how == "direct":
                allows.append(rs.statement.label)
            else:
                delegated.append(rs.statement.label)
        if denies:
            return Result("ExplicitDeny", tuple(denies)), False
        if allows:
            return Result("Allow", tuple(allows)), False
        if delegated:
            return Result("ImplicitDeny", tuple(delegated)), True
        return Result("ImplicitDeny"), False


def evaluate_with_resource_policy(
    identity: Iterable[Policy], resource: ResourcePolicy | None, request: Request, caller: Caller
) -> tuple[Result, str]:
    """Same-account decision over identity and resource policies: (result, which policy type decided:
    ``"identity"``, ``"resource"`` or ``""`` for an implicit deny). A service principal has no identity policy."""
    own = Result("ImplicitDeny") if caller.service else evaluate(identity, request)
    res, _ = resource.evaluate(request, caller) if resource is not None else (Result("ImplicitDeny"), False)
    if own.decision == "ExplicitDeny":
        return own, "identity"
    if res.decision == "ExplicitDeny":
        return res, "resource"
    if own.allowed:
        return own, "identity"
    if res.allowed:
        return res, "resource"
    return Result("ImplicitDeny"), ""
