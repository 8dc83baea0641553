"""The gateway's IAM check of requests signed with a role session (``audit`` and ``enforce``).

Every request the local AWS receives from a role session (a function's, a state machine's) is resolved to the IAM
action(s) and resource(s) it is authorized against (``requests.resolve``), evaluated against that role's identity
policies (``evaluate``), and recorded in ``<state dir>/iam-usage.jsonl``, one line per action:
``{time, principal, role, service, operation, action, resources, decision, reason}``. In ``audit`` a denial is
recorded and the request still answered; in ``enforce`` it is refused with the AccessDenied error of the request's
protocol and the message AWS writes ("User: <assumed-role ARN> is not authorized to perform: <action> on resource:
<ARN> because no identity-based policy allows the <action> action", IAM User Guide, "Troubleshoot access denied
error messages"). Requests signed with the run's key are the account administrator's (the deployer, the CLI, the
tests) and are not evaluated.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loupe_local.iam.evaluate import Caller, Request, Result, evaluate_with_resource_policy
from loupe_local.iam.principals import RolePolicies, RoleSession
from loupe_local.iam.requests import Authorization, UnresolvedRequest, base_context, resolve
from loupe_local.iam.resource_policies import PolicyLookup, policy_for

log = logging.getLogger("loupe_local.iam")

USAGE_FILE = "iam-usage.jsonl"
ROLES_FILE = "iam-roles.json"

# SigV4 signing name -> the botocore services that sign with it, tried in order (the first whose routes match the
# request is it). Names not listed are their own botocore name.
SIGNING_NAMES: dict[str, tuple[str, ...]] = {
    "monitoring": ("cloudwatch",),
    "states": ("stepfunctions",),
    "iotdata": ("iot-data",),
    "greengrass": ("greengrassv2", "greengrass"),
    "sagemaker": ("sagemaker", "sagemaker-featurestore-runtime", "sagemaker-runtime"),
    "servicequotas": ("service-quotas",),
}

# STS documents that no permission is needed for GetCallerIdentity (STS API Reference, GetCallerIdentity: "No
# permissions are required to perform this operation").
_FREE = {("sts", "GetCallerIdentity")}


class Decision:
    """The outcome of one request: what was recorded, and the denial (first denied action) if any."""

    def __init__(self, records: list[dict[str, Any]], denied: dict[str, Any] | None) -> None:
        self.records = records
        self.denied = denied

    @property
    def message(self) -> str:
        assert self.denied is not None
        d = self.denied
        kind = "a resource-based policy" if d.get("resource_policy") else "an identity-based policy"
        why = (
            f"with an explicit deny in {kind} ({', '.join(d['statements'])})"
            if d["decision"] == "ExplicitDeny"
            else f"because no identity-based policy allows the {d['action']} action"
        )
        return f"User: {d['principal']} is not authorized to perform: {d['action']} on resource: {d['resource']} {why}"


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").title(): str(value) for key, value in environ.items() if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").title()] = str(environ[key])
    return headers


def parse(environ: Mapping[str, Any], body: bytes, signing_name: str) -> tuple[str, str, dict[str, Any]]:
    """(botocore service, operation, input) of a request the gateway received, by moto's router and parser."""
    from loupe_local.host import moto_patches

    raw_uri = environ.get("REQUEST_URI") or environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
    url = f"http://{environ.get('HTTP_HOST', '')}{raw_uri}"
    method = str(environ.get("REQUEST_METHOD", "GET"))
    headers = _headers(environ)
    last: Exception | None = None
    for service in SIGNING_NAMES.get(signing_name, (signing_name,)):
        try:
            operation, params = moto_patches.parse_request(service, method, url, headers, body)
        except Exception as exc:  # LookupError (no route), or a model moto does not know
            last = exc
            continue
        return service, operation, params
    raise UnresolvedRequest(f"{signing_name}: {method} {raw_uri.split('?')[0]} matches no operation ({last})")


class Auditor:
    """Resolves, evaluates and records the requests of role sessions; refuses denials when ``enforce``."""

    def __init__(
        self,
        roles: RolePolicies,
        state_dir: Path,
        region: str,
        mode: str = "audit",
        partition_keys: Mapping[str, str] | None = None,
        resource_policies: PolicyLookup | None = None,
    ) -> None:
        self.roles = roles
        # ARN -> the resource-based policy document moto holds (None: moto_patches.resource_policy)
        self.resource_policies = resource_policies
        self.path = Path(state_dir) / USAGE_FILE
        self.region = region
        self.mode = mode
        self.partition_keys = dict(partition_keys or {})
        self._lock = threading.Lock()
        self.checked = 0
        self.seconds = 0.0  # time spent resolving + evaluating (the per-request cost of audit)

    def check(self, session: RoleSession, environ: Mapping[str, Any], body: bytes, signing_name: str) -> Decision:
        started = time.perf_counter()
        try:
            decision = self._decide(session, environ, body, signing_name)
        except Exception as exc:  # never let the audit break a request: record what could not be checked
            log.exception("IAM check of a %s request failed", signing_name)
            decision = Decision(
                [self._record(session, signing_name, "?", f"{signing_name}:?", [], "Unresolved", str(exc))], None
            )
        self.append(decision.records)
        with self._lock:
            self.checked += 1
            self.seconds += time.perf_counter() - started
        return decision

    def authorize(self, session: RoleSession, service: str, operation: str, params: Mapping[str, Any]) -> Decision:
        """Check and record a call a service makes as ``session``'s role without an HTTP request reaching the
        gateway (a pipeline creating its steps' jobs), exactly as :meth:`check` checks a request: same resolver,
        evaluation and usage line. ``service`` is the botocore service name, ``params`` the operation's input."""
        started = time.perf_counter()
        try:
            decision = self._decide_call(session, service, operation, params)
        except Exception as exc:  # recorded as not checked, never a silent allow of a refusal that should be
            log.exception("IAM check of %s:%s failed", service, operation)
            decision = Decision(
                [self._record(session, service, operation, f"{service}:{operation}", [], "Unresolved", str(exc))],
                None,
            )
        self.append(decision.records)
        with self._lock:
            self.checked += 1
            self.seconds += time.perf_counter() - started
        return decision

    def _decide(self, session: RoleSession, environ: Mapping[str, Any], body: bytes, signing_name: str) -> Decision:
        try:
            service, operation, params = parse(environ, body, signing_name)
        except UnresolvedRequest as exc:
            return Decision(
                [self._record(session, signing_name, "?", f"{signing_name}:?", [], "Unresolved", str(exc))], None
            )
        return self._decide_call(session, service, operation, params)

    def _decide_call(self, session: RoleSession, service: str, operation: str, params: Mapping[str, Any]) -> Decision:
        if (service, operation) in _FREE:
            return Decision(
                [
                    self._record(
                        session, service, operation, f"{service}:{operation}", ["*"], "Allow", "needs no permission"
                    )
                ],
                None,
            )
        context = {
            **base_context(session.arn, session.account, self.region),
            "aws:userid": session.session_name,
            **session.context,
        }
        try:
            auths = resolve(
                service,
                operation,
                params,
                region=self.region,
                account=session.account,
                context=context,
                partition_keys=self.partition_keys,
            )
        except UnresolvedRequest as exc:
            return Decision(
                [self._record(session, service, operation, f"{service}:{operation}", [], "Unresolved", str(exc))], None
            )
        policies = self.roles.policies(session.role_name)
        caller = Caller(session.account, arn=session.arn, role_arn=session.role_arn)
        by_action: dict[str, list[tuple[Authorization, Result]]] = {}
        by_resource_policy: set[str] = set()
        for auth in auths:
            # the resource's own policy where the service has one (bucket, queue, topic, function policy): in one
            # account an Allow in the identity OR the resource policy grants, an explicit Deny in either refuses
            # (IAM User Guide, "Policy evaluation logic", "Evaluating identity-based policies with resource-based
            # policies")
            resource_policy = policy_for(auth.resource, self.resource_policies)
            result, by = evaluate_with_resource_policy(
                policies, resource_policy, Request(auth.action, auth.resource, auth.context), caller
            )
            if by == "resource":
                by_resource_policy.add(auth.action)
            by_action.setdefault(auth.action, []).append((auth, result))
        records: list[dict[str, Any]] = []
        denied: dict[str, Any] | None = None
        for action, results in by_action.items():
            refused = next(((a, r) for a, r in results if not r.allowed), None)
            resources = [a.resource for a, _ in results]
            if refused is None:
                statements = sorted({s for _, r in results for s in r.statements})
                record = self._record(
                    session, service, operation, action, resources, "Allow", f"allowed by {', '.join(statements)}"
                )
                if action in by_resource_policy:
                    record["check"] = "resource-policy"
                records.append(record)
                continue
            auth, result = refused
            reason = (
                f"explicit deny in {', '.join(result.statements)}"
                if result.decision == "ExplicitDeny"
                else f"no identity-based policy allows the {action} action on {auth.resource}"
            )
            record = self._record(session, service, operation, action, resources, result.decision, reason)
            if action in by_resource_policy:
                record["check"] = "resource-policy"
            records.append(record)
            if denied is None:
                denied = {
                    "principal": session.arn,
                    "action": action,
                    "resource": auth.resource,
                    "decision": result.decision,
                    "statements": list(result.statements),
                    "resource_policy": action in by_resource_policy,
                }
        return Decision(records, denied)

    @staticmethod
    def _record(
        session: RoleSession,
        service: str,
        operation: str,
        action: str,
        resources: list[str],
        decision: str,
        reason: str,
    ) -> dict[str, Any]:
        return {
            "time": round(time.time(), 3),
            "principal": session.arn,
            "role": session.role_name,
            "service": service,
            "operation": operation,
            "action": action,
            "resources": resources,
            "decision": decision,
            "reason": reason,
        }

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append usage records (the gateway's, and the resource-policy checks of services' deliveries)."""
        if not records:
            return
        data = memoryview("".join(json.dumps(r, default=str) + "\n" for r in records).encode())
        with self._lock:
            # one unbuffered write of whole lines (a text file's buffer would split a long batch into several);
            # readers still see it land part by part, which usage_log_lines allows for
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                while data:
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)


def usage_log_lines(path: Path) -> list[str]:
    """The complete lines of a usage log. The log is appended while it is read (a test between its own calls, a
    report during a run) and a reader can see a write half done: a last line without its newline yet is that
    write, left for the next read. Line numbers are stable: the n-th line is the same record on every read."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1].decode().splitlines()


def read_usage(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """The records of a usage log from its line ``start`` on (complete lines only, as ``usage_log_lines``; lines
    that are not JSON objects are skipped, never fatal)."""
    out = []
    for line in usage_log_lines(path)[start:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
