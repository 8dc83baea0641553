"""IPC authorization of a local nucleus: which component may call which IPC operation on which resource.

What the Greengrass developer guide documents ("Use the AWS IoT Greengrass Core IPC service" > "Authorize
components to perform IPC operations"; "Greengrass nucleus" > configuration ``interpolateComponentConfiguration``)
and aws-greengrass-nucleus' ``AuthorizationHandler``/``WildcardTrie`` do:

* A component's policies are the ``accessControl`` object of **its configuration** (as deployed, so a
  ``configurationUpdate`` can change them): ``{<IPC service>: {<policy ID>: {"operations": [...],
  "resources": [...]}}}``. Nothing is allowed without a policy; a refused call is an ``UnauthorizedError``.
* An operation is named ``aws.greengrass#PublishToIoTCore`` (service ``aws.greengrass.ipc.mqttproxy``), ``*``
  allows every operation of the service, a resource ``*`` every resource.
* Resources match with the ``*`` wildcard anywhere; for the MQTT services (``aws.greengrass.ipc.mqttproxy``)
  the MQTT wildcards too: ``+`` as a whole topic level, ``#`` as the last level (it also matches the parent).
  ``${*}``, ``${+}``, ``${#}`` and ``${$}`` stand for the literal character.
* ``{iot:thingName}`` in a policy is replaced by the core device's thing name only when the nucleus is 2.6.0 or
  later **and** its configuration has ``interpolateComponentConfiguration: true`` (default false). Otherwise the
  text stays as it is and a topic such as ``loupe/{iot:thingName}/inference`` matches no real topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
PUBSUB = "aws.greengrass.ipc.pubsub"
PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
MQTT_STYLE_SERVICES = frozenset({MQTT_PROXY})  # MqttProxyIPCAgent asks for MQTT-style matching
INTERPOLATION_MIN_NUCLEUS = (2, 6, 0)
THING_NAME = "{iot:thingName}"


class Unauthorized(PermissionError):
    """The IPC ``UnauthorizedError``."""


def interpolates(nucleus_version: str, nucleus_config: dict[str, Any]) -> bool:
    """Whether this nucleus replaces recipe variables in component configuration (policies included)."""
    try:
        version = tuple(int(p) for p in str(nucleus_version).split(".")[:3])
    except ValueError:
        return False
    option = (nucleus_config or {}).get("interpolateComponentConfiguration", False)
    enabled = option is True or str(option).lower() == "true"
    return version >= INTERPOLATION_MIN_NUCLEUS and enabled


def _interpolated(value: Any, thing: str) -> Any:
    if isinstance(value, str):
        return value.replace(THING_NAME, thing)
    if isinstance(value, list):
        return [_interpolated(v, thing) for v in value]
    if isinstance(value, dict):
        return {k: _interpolated(v, thing) for k, v in value.items()}
    return value


def _pattern(resource: str, mqtt: bool) -> re.Pattern[str]:
    """A policy resource as a regular expression over the requested resource."""
    out: list[str] = []
    i, n = 0, len(resource)
    while i < n:
        c = resource[i]
        if c == "$" and i + 3 < n and resource[i + 1] == "{" and resource[i + 3] == "}":
            out.append(re.escape(resource[i + 2]))  # ${c}: the literal character
            i += 4
            continue
        level_start = i == 0 or resource[i - 1] == "/"
        level_end = i == n - 1 or resource[i + 1] == "/"
        if c == "*":
            out.append(".*")
        elif mqtt and c == "+" and level_start and level_end:
            out.append("[^/]*")
        elif mqtt and c == "#" and level_start and i == n - 1:
            if out and out[-1] == "/":
                out[-1] = "(?:/.*)?"  # a/# matches a, a/ and everything below it
            else:
                out.append(".*")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


@dataclass
class IpcPolicies:
    """The IPC policies of the components a nucleus runs (from their configurations)."""

    thing: str
    interpolate: bool = False
    by_component: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_configs(cls, thing: str, interpolate: bool, configs: dict[str, dict[str, Any]]) -> IpcPolicies:
        policies: dict[str, dict[str, Any]] = {}
        for name, config in configs.items():
            acl = (config or {}).get("accessControl")
            if isinstance(acl, dict):
                policies[name] = _interpolated(acl, thing) if interpolate else acl
        return cls(thing, interpolate, policies)

    def check(self, component: str, service: str, operation: str, resource: str) -> None:
        """Return if a policy of ``component`` allows ``operation`` of ``service`` on ``resource``; raise
        :class:`Unauthorized` (the IPC error's message as the nucleus words it) otherwise."""
        mqtt = service in MQTT_STYLE_SERVICES
        for policy in ((self.by_component.get(component) or {}).get(service) or {}).values():
            if not isinstance(policy, dict):
                continue
            operations = [str(o) for o in policy.get("operations") or []]
            if operation not in operations and "*" not in operations:
                continue
            for allowed in policy.get("resources") or []:
                if _pattern(str(allowed), mqtt).fullmatch(resource):
                    return
        raise Unauthorized(
            f"Principal {component} is not authorized to perform {service}:{operation} on resource {resource}"
        )
