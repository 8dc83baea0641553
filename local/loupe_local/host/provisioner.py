"""Creates, in the local AWS, every resource of template.yaml that moto supports.

The list of resources comes from the SAM-transformed template itself (in dependency order); this module walks it,
after the checks CloudFormation makes first (:mod:`loupe_local.host.provision_checks`), and hands each resource to the
creator of its *type* (:mod:`loupe_local.host.provision_core`, :mod:`loupe_local.host.provision_services`,
:mod:`loupe_local.host.provision_app`, :mod:`loupe_local.host.provision_policies` (resource-based policies):
boto3 calls against the local endpoint). Types moto cannot hold are recorded as skipped, with the reason, in
``.loupe/local.json``.
Custom resources are created last (:meth:`Provisioner.provision_custom`, :mod:`loupe_local.host.custom_resources`):
their provider is a function of the stack, which runs once the runtime has registered it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from loupe_local.host import provision_app, provision_core, provision_policies, provision_services
from loupe_local.host.custom_resources import is_custom
from loupe_local.host.provision_checks import check_parameters, check_references
from loupe_local.provisioned import Provisioned
from loupe_local.template import ACCOUNT_ID, Resolver, SamApp, TemplateError, creation_order, references

log = logging.getLogger("loupe_local.provision")

# Types with nothing to create locally, and why.
SKIPPED_TYPES = {
    "AWS::SNS::Subscription": "no e-mail delivery locally",
}


class Provisioner:
    def __init__(self, app: SamApp, session: Any, stack_name: str, region: str, parameters: dict[str, Any]):
        self.app = app
        self.session = session
        self.stack_name = stack_name
        self.region = region
        self.done: dict[str, Provisioned] = {}
        self.pending_custom: list[str] = []  # custom resources, in creation order, for provision_custom
        self.resolver = Resolver(app.transformed, parameters, stack_name, region, self._ref, self._get_att)
        self._clients: dict[str, Any] = {}
        self.creators: dict[str, Callable[[str, dict[str, Any]], Provisioned]] = {
            rtype: functools.partial(create, self)
            for rtype, create in (
                provision_core.CREATORS
                | provision_services.CREATORS
                | provision_app.CREATORS
                | provision_policies.CREATORS
            ).items()
        }

    # ------------------------------------------------------------------ plumbing
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def _ref(self, logical_id: str) -> Any:
        if logical_id not in self.done:
            raise TemplateError(f"Ref to {logical_id}, which the template does not declare (or is not created yet)")
        return self.done[logical_id].ref

    def _get_att(self, logical_id: str, attr: str) -> Any:
        res = self.done.get(logical_id)
        if res is None:
            raise TemplateError(f"GetAtt {logical_id}.{attr}: the template does not declare {logical_id}")
        if attr not in res.attrs:
            raise TemplateError(f"GetAtt {logical_id}.{attr}: attribute not available locally")
        return res.attrs[attr]

    def physical_name(self, logical_id: str, max_len: int = 63, lower: bool = True) -> str:
        suffix = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:8]
        base = f"{self.stack_name}-{logical_id}"
        base = base.lower() if lower else base
        return f"{base[: max_len - 9]}-{suffix}"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    # ------------------------------------------------------------------ main
    def provision(self) -> dict[str, Provisioned]:
        resources = self.app.resources
        self.check_parameters()
        check_references(self.app, resources)
        for logical_id in creation_order(resources):
            res = resources[logical_id]
            if "Condition" in res and not self.resolver.condition(res["Condition"]):
                self.done[logical_id] = Provisioned(logical_id, res["Type"], None, skipped="condition is false")
                continue
            rtype = res["Type"]
            if is_custom(rtype):
                self._defer_custom(logical_id, resources)
                continue
            if rtype in SKIPPED_TYPES:
                self.done[logical_id] = Provisioned(
                    logical_id, rtype, self.physical_name(logical_id), skipped=SKIPPED_TYPES[rtype]
                )
                continue
            creator = self.creators.get(rtype)
            if creator is None:
                self.done[logical_id] = Provisioned(
                    logical_id,
                    rtype,
                    self.physical_name(logical_id),
                    skipped="moto does not support this type",
                )
                log.debug("skipped %s (%s): not supported locally", logical_id, rtype)
                continue
            props = self.resolver.resolve(res.get("Properties", {}))
            result = creator(logical_id, props)
            result.properties = props
            self.done[logical_id] = result
            log.debug("created %s %s", rtype, result.ref)
        return self.done

    def _defer_custom(self, logical_id: str, resources: dict[str, Any]) -> None:
        """Keep a custom resource for :meth:`provision_custom`. Nothing may depend on it locally: the rest of the
        stack is created first (a template whose resources use a custom resource's attributes is refused here)."""
        for other, res in resources.items():
            depends_on = res.get("DependsOn", [])
            needs = references(res.get("Properties", {})) | set(
                [depends_on] if isinstance(depends_on, str) else depends_on
            )
            if logical_id in needs and not is_custom(res["Type"]):
                raise TemplateError(
                    f"{other} depends on the custom resource {logical_id}: the local stack creates custom resources "
                    "after every other resource, so nothing may depend on one"
                )
        self.pending_custom.append(logical_id)
        self.done[logical_id] = Provisioned(
            logical_id, self.app.resources[logical_id]["Type"], None, skipped="custom resource not created yet"
        )

    def provision_custom(self, create: Callable[[str, str, dict[str, Any]], Provisioned]) -> None:
        """Create the custom resources (in dependency order) with ``create(logical_id, type, properties)``, which
        raises when CloudFormation would fail the resource; a false Condition skips one as any resource."""
        for logical_id in self.pending_custom:
            res = self.app.resources[logical_id]
            props = self.resolver.resolve(res.get("Properties", {}))
            result = create(logical_id, res["Type"], props)
            result.properties = props
            self.done[logical_id] = result
            log.debug("created %s %s", res["Type"], result.ref)
        self.pending_custom = []

    @property
    def stack_id(self) -> str:
        """The stack's ARN, as ``AWS::StackId`` resolves in the template."""
        return str(self.resolver.pseudo["AWS::StackId"])

    def check_parameters(self) -> None:
        """The parameters and Rules checks CloudFormation makes before it creates anything (see check_parameters)."""
        check_parameters(self.app.transformed, self.resolver)
