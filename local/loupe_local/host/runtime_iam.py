"""The local runtime's IAM: the role sessions the stack's services act with (minted from moto's STS after each role's
trust policy allowed the service), the gateway's checks against their policies (``audit``/``enforce``), the checks of
deliveries the runtime makes as an AWS service, and the clients and credentials a service or job acts with.

A part of :class:`loupe_local.host.runtime.LocalRuntime` (its base class), in a module of its own."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from loupe_local.host import moto_patches
from loupe_local.host.invoker import RegisteredFunction
from loupe_local.iam import mode as iam_mode
from loupe_local.iam.audit import ROLES_FILE, USAGE_FILE, Auditor
from loupe_local.iam.principals import (
    RolePolicies,
    RoleSession,
    SessionRegistry,
    TrustError,
    mint,
    role_policies,
    service_principal,
    trusts,
)
from loupe_local.iam.resource_policies import ServiceDelivery
from loupe_local.template import ACCOUNT_ID

if TYPE_CHECKING:
    from pathlib import Path

    from loupe_local.host.invoker import Invoker
    from loupe_local.host.provisioner import Provisioner
    from loupe_local.host.router import Router
    from loupe_local.provisioned import Provisioned

log = logging.getLogger("loupe_local")

# the action EventBridge performs on the targets moto delivers itself (eb-use-resource-based.html: SQS and SNS)
_TARGET_ACTIONS = {"sqs": "sqs:SendMessage", "sns": "sns:Publish"}


class RuntimeIam:
    """The IAM state of a runtime: its mode, the session registry the gateway accepts, each role's session."""

    if TYPE_CHECKING:  # what the runtime (the class this is a base of) has
        resources: dict[str, Provisioned]
        _gateway: Any
        invoker: Invoker | None
        router: Router | None
        state_dir: Path
        region: str
        endpoint: str
        _provisioner: Provisioner | None
        _app: Any

        def client(self, service: str) -> Any: ...
        def physical(self, logical_id: str) -> str: ...
        def arn(self, logical_id: str) -> str: ...

    def _init_iam(self, iam: str | None) -> None:
        # LOUPE_LOCAL_IAM: off (no principal but the run's key), audit (each principal acts under its own role
        # session; every call is checked and recorded, none refused), enforce (a denied call is refused)
        self.iam_mode = iam_mode({"LOUPE_LOCAL_IAM": iam} if iam is not None else None)
        self.sessions = SessionRegistry()
        self._role_sessions: dict[str, RoleSession] = {}  # role ARN -> the session its service acts with
        self._role_clients: dict[tuple[str, str], Any] = {}  # (role ARN, service) -> its client (client_as)
        self._role_clients_lock = threading.Lock()
        self._function_sessions: dict[str, RoleSession] = {}  # function logical id -> its role's session
        self.role_policies: RolePolicies | None = None

    def set_iam(self, mode: str) -> None:
        """Switch how the local AWS treats IAM (``off``, ``audit``, ``enforce``); may be called on a running
        runtime. Sessions are minted the first time a mode other than ``off`` is chosen."""
        mode = iam_mode({"LOUPE_LOCAL_IAM": mode})
        assert self._gateway is not None and self.invoker is not None and self.router is not None, "start() first"
        self.iam_mode = mode
        if mode == "off":
            self._gateway.auditor = None
            for fn in self.invoker.functions.values():
                self._give_role(fn, None)
            moto_patches.set_engine_role_credentials(None)
            self.router.client_as = None
            self.router.resource_check = None
            moto_patches.set_event_target_filter(None)
            return
        if self.role_policies is None:
            self._mint_sessions()
        assert self.role_policies is not None
        auditor = Auditor(self.role_policies, self.state_dir, self.region, mode, partition_keys=self._partition_keys())
        self._gateway.auditor = auditor
        # deliveries the local runtime makes as an AWS service are checked against the target's resource policy
        delivery = ServiceDelivery(auditor.append, mode, ACCOUNT_ID, self.region, self._stack_arns())
        self.router.resource_check = delivery.allows
        moto_patches.set_event_target_filter(
            lambda target, rule_arn: delivery.allows(
                "events.amazonaws.com", _TARGET_ACTIONS[target["Arn"].split(":")[2]], target["Arn"], rule_arn
            )
        )
        for fn in self.invoker.functions.values():
            session = self._function_sessions.get(fn.logical_id)
            self._give_role(fn, session.env() if session else None)
        moto_patches.set_engine_role_credentials(self._engine_role_credentials)
        self.router.client_as = self.client_as

    def _stack_arns(self) -> dict[str, str]:
        """ARN -> logical ID of the stack's resources (a resource-policy check names the stack's target)."""
        out = {}
        for lid, res in self.resources.items():
            if res.skipped:
                continue
            for value in (res.attrs.get("Arn"), res.ref):
                if isinstance(value, str) and value.startswith("arn:"):
                    out[value] = lid
        return out

    @staticmethod
    def _give_role(fn: RegisteredFunction, role_env: dict[str, str] | None) -> None:
        """Run ``fn`` with ``role_env`` from its next invocation. Its handler holds clients made with the credential
        of its first invocation, so a change of credential starts a fresh execution environment (the module is
        imported again), as Lambda does after a function's configuration changes."""
        if fn.role_env != role_env:
            fn.role_env = role_env
            fn.module = None

    def client_as(self, role_arn: str, service: str) -> Any:
        """A client of the local AWS signing as ``role_arn``'s session (None when no principal acts with it).
        Made once per (role, service): a pipeline's job I/O asks for one per transfer."""
        session = self._role_sessions.get(role_arn)
        if session is None or self.iam_mode == "off":
            return None
        key = (role_arn, service)
        with self._role_clients_lock:
            client = self._role_clients.get(key)
            if client is None:
                client = boto3.Session(region_name=self.region, **session.boto_kwargs()).client(
                    service, endpoint_url=self.endpoint, config=Config(retries={"max_attempts": 2, "mode": "standard"})
                )
                self._role_clients[key] = client
        return client

    def grant(self, logical_id: str, policy_name: str, document: Mapping[str, Any]) -> None:
        """Add an inline policy to the stack's role ``logical_id``, as ``aws iam put-role-policy`` does: in moto's
        IAM and in the policies the gateway checks its session against (iam-roles.json too). For a test whose own
        resources a stack role acts on (a pipeline run registering into the test's own model package group)."""
        role_name = self.physical(logical_id)
        self.client("iam").put_role_policy(
            RoleName=role_name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
        )
        if self.role_policies is not None:
            self.role_policies.add(role_name, self.arn(logical_id), policy_name, document)
            self.role_policies.write(self.state_dir / ROLES_FILE)

    def authorize_as(self, role_arn: str, service: str, operation: str, params: Mapping[str, Any]) -> str | None:
        """Check a call a service makes as ``role_arn`` with no request reaching the gateway (a pipeline creating
        its steps' jobs): recorded in iam-usage.jsonl like any checked call; the AccessDenied message when it is
        denied and IAM is enforced, else None (allowed, audited only, or no session for that role)."""
        session = self._role_sessions.get(role_arn)
        auditor = self._gateway.auditor if self._gateway is not None else None
        if session is None or auditor is None or self.iam_mode == "off":
            return None
        decision = auditor.authorize(session, service, operation, params)
        return decision.message if decision.denied is not None and auditor.mode == "enforce" else None

    def register_session(self, session: RoleSession) -> None:
        """Accept ``session`` at the gateway (a session the IoT credentials provider stand-in minted for a device);
        with IAM checked its calls are evaluated against its role's policies and recorded."""
        self.sessions.add(session)

    def role_environment(self, role_arn: str) -> dict[str, str] | None:
        """The credential variables of a process running as ``role_arn`` (None while IAM is off or no session)."""
        session = self._role_sessions.get(role_arn)
        return session.env() if session is not None and self.iam_mode != "off" else None

    def function_session(self, logical_id: str) -> RoleSession | None:
        """The role session function ``logical_id`` runs with (None while IAM is off)."""
        return self._function_sessions.get(logical_id) if self.iam_mode != "off" else None

    def role_session(self, role_arn: str) -> RoleSession | None:
        """The session a service acts with for ``role_arn`` (a state machine's role; None while IAM is off)."""
        return self._role_sessions.get(role_arn) if self.iam_mode != "off" else None

    def _engine_role_credentials(self, role_arn: str) -> dict[str, str] | None:
        session = self._role_sessions.get(role_arn)
        return session.boto_kwargs() if session is not None else None

    def _partition_keys(self) -> dict[str, str]:
        """DynamoDB table name -> its partition key attribute (for ``dynamodb:LeadingKeys``)."""
        out = {}
        for res in self.resources.values():
            if res.type == "AWS::DynamoDB::Table" and not res.skipped:
                for key in res.properties.get("KeySchema", []):
                    if key.get("KeyType") == "HASH":
                        out[str(res.ref)] = key["AttributeName"]
        return out

    def _mint_sessions(self) -> None:
        """The role sessions the stack's services act with, from moto's STS, after each role's trust policy
        allowed the service; the roles' policies are kept for the gateway's checks (and iam-roles.json)."""
        assert self._provisioner is not None
        resolver = self._provisioner.resolver
        role_arns = {
            lid: res.attrs["Arn"]
            for lid, res in self.resources.items()
            if res.type == "AWS::IAM::Role" and not res.skipped and "Arn" in res.attrs
        }
        roles = role_policies(self._app.resources, role_arns, resolver.resolve, moto_patches.aws_managed_policy)
        trust = {
            arn: self.resources[lid].properties.get("AssumeRolePolicyDocument", {}) for lid, arn in role_arns.items()
        }
        sts = self.client("sts")

        def session_for(role_arn: str, service: str, session_name: str) -> RoleSession | None:
            if role_arn not in trust:
                log.warning("%s acts with %s, which the stack does not create: not checked", session_name, role_arn)
                return None
            if not trusts(trust[role_arn], role_arn, service_principal(service)):
                message = f"role {role_arn} does not trust {service_principal(service)} (its trust policy)"
                if self.iam_mode == "enforce":
                    raise TrustError(message)
                log.warning("IAM: %s", message)
            if role_arn not in self._role_sessions:
                session = mint(sts, role_arn, session_name)
                self.sessions.add(session)
                self._role_sessions[role_arn] = session
            return self._role_sessions[role_arn]

        for lid, res in self.resources.items():
            if res.type == "AWS::Lambda::Function" and not res.skipped and res.properties.get("Role"):
                session = session_for(str(res.properties["Role"]), "lambda", str(res.ref))
                if session is not None:
                    self._function_sessions[lid] = session
        for res in self.resources.values():
            if res.type == "AWS::StepFunctions::StateMachine" and not res.skipped and res.properties.get("RoleArn"):
                session_for(str(res.properties["RoleArn"]), "states", str(res.attrs.get("Name") or res.logical_id))
        for res in self.resources.values():
            if res.type == "AWS::Events::Rule" and not res.skipped:
                for target in res.properties.get("Targets", []):
                    if target.get("RoleArn"):
                        session_for(str(target["RoleArn"]), "events", str(res.ref))
            if res.type == "AWS::IoT::TopicRule" and not res.skipped:
                for role_arn in _role_arns(res.properties.get("TopicRulePayload", {})):
                    session_for(role_arn, "iot", str(res.ref))
        # SageMaker acts with a role passed to it: a pipeline's and a feature group's RoleArn, a labeling job's
        # (given in CreateLabelingJob, so every stack role that trusts SageMaker gets its session)
        for role_arn in role_arns.values():
            if trusts(trust[role_arn], role_arn, service_principal("sagemaker")):
                session_for(role_arn, "sagemaker", "SageMaker")
        self.role_policies = roles
        roles.write(self.state_dir / ROLES_FILE)
        (self.state_dir / USAGE_FILE).unlink(missing_ok=True)  # the usage of this run only (a state dir is reused)


def _role_arns(value: Any) -> list[str]:
    """Every ``RoleArn`` in a resource's properties (an IoT rule's actions and error action)."""
    if isinstance(value, dict):
        found = [str(v) for k, v in value.items() if k == "RoleArn" and isinstance(v, str)]
        return found + [arn for k, v in value.items() if k != "RoleArn" for arn in _role_arns(v)]
    if isinstance(value, list):
        return [arn for item in value for arn in _role_arns(item)]
    return []
