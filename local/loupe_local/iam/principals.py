"""Who acts locally under which role: STS sessions per principal, the roles' policies, and the trust check.

As in AWS, a service acts for the stack with temporary credentials of the role the template gives it: Lambda puts
the function's role session in the function's environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``: Lambda Developer Guide, "Using Lambda environment variables" -> reserved variables), Step
Functions calls services with the state machine's role ("Step Functions execution role", Step Functions Developer
Guide). The local runtime mints those sessions with moto's STS (``AssumeRole``) after the stack is provisioned,
once each role's trust policy allows the service principal (IAM User Guide, "Roles terms and concepts" -> trust
policy; "IAM JSON policy elements: Principal" -> AWS service principals).

``RolePolicies`` holds each role's identity policies (inline, ``AWS::IAM::Policy`` attached to it, and the AWS
managed policies it names, whose documents come from moto's copy of them), parsed once for the gateway's checks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loupe_local.iam.evaluate import Policy, PolicyError, Request, evaluate
from loupe_local.private_files import write_private

# what a session lasts when the runtime mints it; the longest AssumeRole allows (STS API Reference, AssumeRole
# DurationSeconds: up to 12 hours with a role's MaxSessionDuration)
SESSION_SECONDS = 12 * 3600


class TrustError(PermissionError):
    """A role's trust policy does not let the service assume it; the message names the role and the service."""


@dataclass(frozen=True)
class RoleSession:
    """A role session as STS issues it, and who it stands for."""

    role_name: str
    role_arn: str
    session_name: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float  # epoch seconds
    # request context keys the issuer adds to every call of the session: the IoT credentials provider's
    # credentials-iot:ThingName, ThingTypeName, AwsCertificateId (IoT developer guide, "Authorizing direct calls to
    # AWS services using AWS IoT Core credential provider"); none for the services' own sessions
    context: Mapping[str, str] = field(default_factory=dict)

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]

    @property
    def arn(self) -> str:
        """The assumed-role ARN, the principal AWS names in an AccessDenied message and ``aws:PrincipalArn``'s
        session form (IAM User Guide, "IAM identifiers" -> role session ARNs)."""
        return f"arn:aws:sts::{self.account}:assumed-role/{self.role_name}/{self.session_name}"

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expiration

    def env(self) -> dict[str, str]:
        """The variables Lambda sets for the function's execution role."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }

    def boto_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }


class SessionRegistry:
    """The role sessions the local AWS accepts, by access key id (the gatekeeper's lookup)."""

    def __init__(self) -> None:
        self._by_key: dict[str, RoleSession] = {}
        self._lock = threading.Lock()

    def add(self, session: RoleSession) -> None:
        with self._lock:
            self._by_key[session.access_key_id] = session

    def get(self, access_key_id: str) -> RoleSession | None:
        return self._by_key.get(access_key_id)

    def clear(self) -> None:
        with self._lock:
            self._by_key.clear()

    def __len__(self) -> int:
        return len(self._by_key)


def _principal_services(principal: Any) -> set[str]:
    if principal == "*":
        return {"*"}
    if not isinstance(principal, Mapping):
        return set()
    services = principal.get("Service", [])
    return {services} if isinstance(services, str) else set(services)


def trusts(trust_policy: Mapping[str, Any], role_arn: str, service_principal: str) -> bool:
    """Whether ``trust_policy`` lets ``service_principal`` (``lambda.amazonaws.com``) call ``sts:AssumeRole`` on
    the role: a statement naming that service (or ``*``) as Principal, evaluated like any statement (its Action
    and Condition), with explicit deny winning. A trust policy names no Resource: the role itself is it."""
    raw = trust_policy.get("Statement", [])
    items = [raw] if isinstance(raw, Mapping) else list(raw)
    statements = []
    for item in items:
        services = _principal_services(item.get("Principal"))
        if "NotPrincipal" in item or not ({"*", service_principal} & services):
            continue
        statement = {k: v for k, v in item.items() if k not in ("Principal", "Resource", "NotResource")}
        statements.append({**statement, "Resource": role_arn})
    if not statements:
        return False
    policy = Policy.parse("trust", {"Version": trust_policy.get("Version", "2012-10-17"), "Statement": statements})
    context = {"aws:PrincipalServiceName": service_principal}
    return evaluate([policy], Request("sts:AssumeRole", role_arn, context)).allowed


def mint(
    sts: Any,
    role_arn: str,
    session_name: str,
    duration: int = SESSION_SECONDS,
    context: Mapping[str, str] | None = None,
) -> RoleSession:
    """A session of ``role_arn`` from (moto's) STS ``AssumeRole``, called with the run's administrator key;
    ``context``: the request context keys its calls carry (see :attr:`RoleSession.context`)."""
    out = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64], DurationSeconds=duration)
    creds = out["Credentials"]
    expiration = creds["Expiration"]
    expires = expiration.timestamp() if hasattr(expiration, "timestamp") else time.time() + duration
    return RoleSession(
        role_name=role_arn.rsplit("/", 1)[-1],
        role_arn=role_arn,
        session_name=session_name[:64],
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
        expiration=expires,
        context=dict(context or {}),
    )


@dataclass
class RolePolicies:
    """Each role's identity policies: raw documents (for the report) and parsed (for evaluation)."""

    documents: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # role name -> policy name -> doc
    arns: dict[str, str] = field(default_factory=dict)  # role name -> role ARN
    _parsed: dict[str, list[Policy]] = field(default_factory=dict)

    def add(self, role_name: str, role_arn: str, policy_name: str, document: Mapping[str, Any]) -> None:
        self.arns[role_name] = role_arn
        self.documents.setdefault(role_name, {})[policy_name] = dict(document)
        self._parsed.pop(role_name, None)

    def policies(self, role_name: str) -> list[Policy]:
        parsed = self._parsed.get(role_name)
        if parsed is None:
            parsed = []
            for name, document in self.documents.get(role_name, {}).items():
                try:
                    parsed.append(Policy.parse(name, document))
                except PolicyError as exc:
                    raise PolicyError(f"role {role_name}: {exc}") from exc
            self._parsed[role_name] = parsed
        return parsed

    def as_json(self) -> dict[str, Any]:
        return {name: {"arn": self.arns.get(name, ""), "policies": docs} for name, docs in self.documents.items()}

    def write(self, path: Path) -> Path:
        return write_private(path, json.dumps(self.as_json(), indent=1, default=str))

    @classmethod
    def read(cls, path: Path) -> RolePolicies:
        out = cls()
        for name, item in json.loads(path.read_text()).items():
            for policy_name, document in item.get("policies", {}).items():
                out.add(name, item.get("arn", ""), policy_name, document)
        return out


def role_policies(
    resources: Mapping[str, Mapping[str, Any]],
    role_arns: Mapping[str, str],
    resolve: Any,
    managed: Any,
) -> RolePolicies:
    """The identity policies of every provisioned role of the (SAM-transformed) template.

    ``resources``: the template's resources; ``role_arns``: logical id -> ARN of the provisioned roles;
    ``resolve``: the provisioner's intrinsic resolver; ``managed``: managed policy ARN -> document (or None).
    """
    out = RolePolicies()
    names = {logical: arn.rsplit("/", 1)[-1] for logical, arn in role_arns.items()}
    for logical, res in resources.items():
        if res.get("Type") != "AWS::IAM::Role" or logical not in names:
            continue
        props = resolve(res.get("Properties", {}))
        name, arn = names[logical], role_arns[logical]
        out.arns[name] = arn
        for item in props.get("Policies", []):
            out.add(name, arn, item["PolicyName"], {"Version": "2012-10-17", **item["PolicyDocument"]})
        for managed_arn in props.get("ManagedPolicyArns", []):
            document = managed(managed_arn)
            if document is not None:
                out.add(name, arn, managed_arn, document)  # named by its ARN: AWS's, not the template's
    for logical, res in resources.items():
        if res.get("Type") != "AWS::IAM::Policy":
            continue
        props = resolve(res.get("Properties", {}))
        for role in props.get("Roles", []):
            name = str(role)
            arn = next((a for a in role_arns.values() if a.rsplit("/", 1)[-1] == name), "")
            if arn:
                out.add(name, arn, props.get("PolicyName") or logical, props["PolicyDocument"])
    return out


def service_principal(service: str) -> str:
    return f"{service}.amazonaws.com"
