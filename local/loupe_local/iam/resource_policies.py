"""Resource-based policies, read where the local AWS keeps them and evaluated as IAM does (issue 19).

Two callers:

- ``ServiceDelivery``: where the local runtime delivers *as an AWS service* (EventBridge invoking a rule's Lambda
  target or sending to its dead-letter queue, IoT Core invoking a topic rule's Lambda action, CloudWatch publishing
  an alarm action to SNS), the target's resource policy must grant the service principal, with
  ``aws:SourceArn`` = the rule's or alarm's ARN and ``aws:SourceAccount`` = the account. A service principal has no
  identity-based policy: only the resource policy can grant it (IAM User Guide, "Policy evaluation logic";
  Lambda Developer Guide, "Viewing resource-based IAM policies in Lambda"; EventBridge User Guide, "Using
  resource-based policies for Amazon EventBridge" (Lambda, SQS and SNS targets and dead-letter queues); AWS IoT
  Developer Guide, "Lambda" rule action: "AWS IoT needs permission to invoke the function"; CloudWatch User Guide,
  "Using Amazon CloudWatch alarms" -> SNS topic access policy). ``audit`` records a would-deny and delivers;
  ``enforce`` does not deliver, as AWS fails the delivery.
- ``policy_for``: the gateway's check of a role session's request also evaluates the target's resource policy where
  the service has one (S3 bucket policy, SQS queue policy, SNS topic policy, Lambda function policy), with the
  same-account rule (an Allow in either policy grants, an explicit Deny in either refuses).

Each check is one line of ``iam-usage.jsonl`` with ``"check": "resource-policy"``; a delivery check's principal is
the service (``events.amazonaws.com``) and ``stack_resource`` names the target's logical ID when the stack made it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from loupe_local.iam.evaluate import Caller, PolicyError, Request, ResourcePolicy, evaluate_with_resource_policy

log = logging.getLogger("loupe_local.iam")

# services whose resources carry a resource-based policy the local AWS holds
SERVICES_WITH_POLICIES = ("s3", "sqs", "sns", "lambda")

PolicyLookup = Callable[[str], dict[str, Any] | None]


def policy_for(arn: str, lookup: PolicyLookup | None = None) -> ResourcePolicy | None:
    """The parsed resource policy of ``arn`` (None: the resource has none). A policy that cannot be evaluated is
    logged and treated as absent (it grants nothing; an explicit Deny in it is then missed, said in the log)."""
    parts = arn.split(":")
    if len(parts) < 6 or parts[2] not in SERVICES_WITH_POLICIES:
        return None
    if lookup is None:
        from loupe_local.host.moto_patches import resource_policy

        lookup = resource_policy
    document = lookup(arn)
    if not document:
        return None
    return _parsed(arn, json.dumps(document, sort_keys=True))


@functools.lru_cache(maxsize=512)
def _parsed(arn: str, text: str) -> ResourcePolicy | None:
    """The parsed policy, once per (resource, document): it is read on every checked request, and changes rarely."""
    try:
        return ResourcePolicy.parse(f"resource policy of {arn}", json.loads(text))
    except PolicyError as exc:
        log.warning("the resource policy of %s cannot be evaluated locally: %s", arn, exc)
        return None


def service_context(source_arn: str, account: str, region: str) -> dict[str, Any]:
    """The request context of a call a service makes on a resource's behalf ("AWS global condition context keys":
    aws:SourceArn, aws:SourceAccount, aws:PrincipalIsAWSService; SNS's legacy AWS:SourceOwner is the account)."""
    return {
        "aws:SourceArn": source_arn,
        "aws:SourceAccount": account,
        "aws:SourceOwner": account,
        "aws:PrincipalIsAWSService": True,
        "aws:SecureTransport": True,
        "aws:RequestedRegion": region,
    }


class ServiceDelivery:
    """The resource-policy check of a delivery the local runtime makes as an AWS service."""

    def __init__(
        self,
        append: Callable[[list[dict[str, Any]]], None],
        mode: str,
        account: str,
        region: str,
        stack_resources: Mapping[str, str] | None = None,
        lookup: PolicyLookup | None = None,
    ) -> None:
        self.append = append
        self.mode = mode
        self.account = account
        self.region = region
        self.stack_resources = dict(stack_resources or {})  # ARN -> logical ID of what the stack created
        self.lookup = lookup

    def allows(self, service_principal: str, action: str, target: str, source_arn: str) -> bool:
        """Record the check; True when the delivery goes ahead (always in ``audit``, when granted in
        ``enforce``)."""
        policy = policy_for(target, self.lookup)
        request = Request(action, target, service_context(source_arn, self.account, self.region))
        result, _ = evaluate_with_resource_policy((), policy, request, Caller(self.account, service=service_principal))
        if result.allowed:
            reason = f"allowed by {', '.join(result.statements)}"
        elif result.decision == "ExplicitDeny":
            reason = f"explicit deny in {', '.join(result.statements)}"
        else:
            reason = (
                f"no resource-based policy allows {service_principal} to perform {action} on {target}"
                f" (aws:SourceArn {source_arn})"
                + ("" if policy is not None else ": the resource has no resource-based policy")
            )
        logical_id = self.stack_resources.get(target) or self.stack_resources.get(_unqualified(target))
        self.append(
            [
                {
                    "time": round(time.time(), 3),
                    "principal": service_principal,
                    "role": None,
                    "service": action.split(":")[0],
                    "operation": "delivery",
                    "action": action,
                    "resources": [target],
                    "decision": result.decision,
                    "reason": reason,
                    "check": "resource-policy",
                    "source": source_arn,
                    "stack_resource": logical_id,
                }
            ]
        )
        if not result.allowed:
            log.warning("IAM (%s): %s may not %s on %s: %s", self.mode, service_principal, action, target, reason)
        return result.allowed or self.mode != "enforce"


def _unqualified(arn: str) -> str:
    """A Lambda function ARN without its version or alias (the stack's resources are named unqualified)."""
    parts = arn.split(":")
    return ":".join(parts[:7]) if len(parts) > 7 and parts[2] == "lambda" else arn
