"""The local broker's stand-in for the devices' IoT policy (template.yaml ``EdgeDevicePolicy``).

A core device connects with its thing name as MQTT client ID and publishes on ``loupe/<thing>/*`` and
``$aws/things/<thing>/*``. Thing policy variables (``${iot:Connection.Thing.*}``) are not supported in a
Greengrass core device's policy (Greengrass developer guide, "Device authentication and authorization for AWS IoT
Greengrass"), so the stack's policy names the devices by a thing-name prefix; ``CoreDevicePolicy`` evaluates that
document as IoT Core evaluates it for a core device (a thing variable never resolves), and the broker holds every
publish to it as well as to the local identity rule below. A publish the policy denies is not delivered and IoT
Core closes the connection (the client sees a disconnect; the lifecycle event's ``disconnectReason`` is
``AUTHORIZATION_FAILURE``: https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html).

Locally there are no certificates: a client authenticates with the run's MQTT password (username
``loupe-local``, password derived from the local AWS's per-run secret: ``loupe_local.local_auth.mqtt_password``;
anonymous clients and wrong passwords are refused at CONNECT), and its client ID is then its identity, exactly as
in the policy. ``may_publish`` is the rule; ``DevicePolicyPlugin`` enforces it in amqtt (drop + disconnect);
``mosquitto_acl`` writes the same rule as a mosquitto ACL (mosquitto drops the message but keeps the connection:
the one difference, see mqtt_broker). A *will* message is a publish the broker makes for the client later, so
its topic obeys the same rule: a CONNECT whose will topic the client may not publish on is refused as not
authorized (``DeviceAuthPlugin`` in amqtt, which otherwise sent wills unchecked; mosquitto checks the will
against its ACL at CONNECT). Subscriptions are not restricted locally (the rules engine and tools subscribe to
``loupe/+/...``).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("loupe_local.host.mqtt_policy")

# The iot:Publish resources of EdgeDevicePolicy, with %c standing for the connection's thing name (= client ID).
PUBLISH_PREFIXES = ("loupe/%c/", "$aws/things/%c/")


def may_publish(client_id: str | None, topic: str, policy: CoreDevicePolicy | None = None) -> bool:
    """Whether a client connected with ``client_id`` may publish on ``topic``: under its own thing name (locally
    the client ID stands for the device's certificate and thing) and, given the stack's device ``policy``, only
    where that policy allows a core device to publish."""
    if not client_id or any(ch in client_id for ch in "+#/"):
        return False
    if not any(topic.startswith(prefix.replace("%c", client_id)) for prefix in PUBLISH_PREFIXES):
        return False
    return policy is None or policy.allows("iot:Publish", f"topic/{topic}", client_id)


def mosquitto_acl(policy: CoreDevicePolicy | None = None) -> str:
    """The same rule for mosquitto (``acl_file``): ``pattern write`` with %c, read on every topic. ``pattern``
    lines apply to every client; a ``topic`` line at the top of the file would apply to anonymous clients only,
    and the broker has none. An ACL cannot match part of a topic level, so with a ``policy`` a prefix is kept
    only where the policy lets some core device publish under it (a policy whose only grants use thing policy
    variables grants nothing); amqtt evaluates the policy per client."""
    lines = ["# EdgeDevicePolicy: a client publishes only under its own thing name (its client ID)", "pattern read #"]
    lines += [
        f"pattern write {prefix}#"
        for prefix in PUBLISH_PREFIXES
        if policy is None or policy.may_publish_somewhere_under(prefix.split("%c", 1)[0])
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the stack's core-device policy
# The local broker also holds devices to the IoT policy the stack attaches to them (EdgeDevicePolicy), evaluated the
# way IoT Core evaluates a Greengrass core device's policy: thing policy variables (${iot:Connection.Thing.*})
# are not supported there (Greengrass developer guide, "Device authentication and authorization for AWS IoT
# Greengrass" > "AWS IoT policies for data plane operations"), so a resource or condition that uses one never
# matches. ${iot:ClientId} resolves to the connection's client ID. "*" and "?" are the policy wildcards; MQTT's
# "+" and "#" are literal characters in a policy (same page).
THING_VARIABLE = "${iot:Connection.Thing."
POLICY_ENV = "LOUPE_MQTT_DEVICE_POLICY"  # the amqtt process reads the policy file's path from it


class PolicyError(ValueError):
    """A policy the local broker cannot evaluate faithfully (it says which statement and why)."""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in text), re.DOTALL)


class CoreDevicePolicy:
    """An IoT policy document, evaluated for a Greengrass core device: an explicit Deny wins, else any Allow."""

    def __init__(self, document: dict[str, Any], arn_prefix: str) -> None:
        """``arn_prefix``: ``arn:<partition>:iot:<region>:<account>:``, what the document's resources start with."""
        self.document = document
        self.arn_prefix = arn_prefix
        self.statements = _as_list(document.get("Statement", []))
        for i, st in enumerate(self.statements):
            if "NotAction" in st or "NotResource" in st:
                raise PolicyError(f"statement {i}: NotAction/NotResource are not evaluated locally")
            for keys in (st.get("Condition") or {}).values():
                if any(not str(key).startswith("iot:Connection.Thing.") for key in keys):
                    raise PolicyError(f"statement {i}: condition keys {sorted(keys)} are not evaluated locally")

    def allows(self, action: str, resource: str, client_id: str) -> bool:
        """Whether ``action`` on ``resource`` (an ARN, or a path such as ``topic/loupe/x`` under ``arn_prefix``)
        is allowed to a core device connected with ``client_id``."""
        arn = resource if resource.startswith("arn:") else self.arn_prefix + resource
        allowed = False
        for st in self.statements:
            if not any(_pattern(a.lower()).fullmatch(action.lower()) for a in _as_list(st.get("Action", []))):
                continue
            if st.get("Condition"):
                continue  # only thing-variable conditions get here (checked above): unresolved, so they never hold
            if not any(self._resource_matches(r, arn, client_id) for r in _as_list(st.get("Resource", []))):
                continue
            if st.get("Effect") == "Deny":
                return False
            allowed = allowed or st.get("Effect") == "Allow"
        return allowed

    @staticmethod
    def _resource_matches(pattern: str, arn: str, client_id: str) -> bool:
        resolved = pattern.replace("${iot:ClientId}", client_id)
        if "${" in resolved:  # a thing policy variable (or another one a core device's connection lacks)
            return False
        return bool(_pattern(resolved).fullmatch(arn))

    def may_publish_somewhere_under(self, first_level: str) -> bool:
        """Whether some Allow on iot:Publish names a topic under ``first_level`` that a core device can resolve
        (what a broker that cannot match client-ID prefixes, mosquitto, can still check)."""
        for st in self.statements:
            if st.get("Effect") != "Allow" or st.get("Condition"):
                continue
            if not any(_pattern(a.lower()).fullmatch("iot:publish") for a in _as_list(st.get("Action", []))):
                continue
            for r in _as_list(st.get("Resource", [])):
                if "${" in r.replace("${iot:ClientId}", "x"):
                    continue
                path = r[len(self.arn_prefix) :] if r.startswith(self.arn_prefix) else ""
                if r == "*" or (path.startswith("topic/") and path[len("topic/") :].startswith(first_level)):
                    return True
        return False

    def to_json(self) -> str:
        return json.dumps({"arn_prefix": self.arn_prefix, "document": self.document})

    @classmethod
    def from_json(cls, text: str) -> CoreDevicePolicy:
        data = json.loads(text)
        return cls(data["document"], data["arn_prefix"])


# the environment variable the amqtt broker process reads the run's MQTT password from (never its command line)
PASSWORD_ENV = "LOUPE_MQTT_BROKER_PASSWORD"  # noqa: S105 - the variable's name, not a password
USERNAME = "loupe-local"


def may_connect(username: str | None, password: str | bytes | None, expected: str) -> bool:
    """Whether a CONNECT's credentials are the run's MQTT login (no anonymous client, no other password)."""
    if not expected or username != USERNAME or password is None:
        return False
    given = password.encode() if isinstance(password, str) else bytes(password)
    return hmac.compare_digest(given, expected.encode())


try:
    from amqtt.contexts import Action
    from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
except ImportError:  # mosquitto-only environments
    BaseTopicPlugin = BaseAuthPlugin = object  # type: ignore[assignment,misc]
    Action = None  # type: ignore[assignment,misc]


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc,valid-type]
    """amqtt authentication: the run's MQTT login, and a will topic the client may publish on."""

    @dataclass
    class Config:
        pass

    async def authenticate(self, *, session: Any = None) -> bool:
        client_id = getattr(session, "client_id", None)
        if not may_connect(getattr(session, "username", None), getattr(session, "password", None), _password()):
            log.warning("CONNECT refused: client %r did not log in with the run's MQTT credential", client_id)
            return False
        will_topic = getattr(session, "will_topic", None) if getattr(session, "will_flag", False) else None
        if will_topic is not None and not may_publish(client_id, will_topic, _device_policy()):
            log.warning("CONNECT refused: client %r may not publish its will on %r", client_id, will_topic)
            return False
        return True


def _password() -> str:
    return os.environ.get(PASSWORD_ENV, "")


@functools.cache
def _device_policy() -> CoreDevicePolicy | None:
    path = os.environ.get(POLICY_ENV)
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return CoreDevicePolicy.from_json(f.read())


class DevicePolicyPlugin(BaseTopicPlugin):  # type: ignore[misc,valid-type]
    """amqtt topic filter: a denied publish is dropped and its client disconnected, as IoT Core does."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None, action: Any = None) -> bool:
        if action != Action.PUBLISH:
            return True
        client_id = getattr(session, "client_id", None)
        if may_publish(client_id, topic or "", _device_policy()):
            return True
        log.warning("AUTHORIZATION_FAILURE: client %r may not publish on %r; disconnecting it", client_id, topic)
        broker = getattr(self.context, "_broker_instance", None)
        entry = broker._sessions.get(client_id) if broker is not None else None  # noqa: SLF001 - no public API
        handler = entry[1] if entry else None
        if handler is not None and getattr(handler, "writer", None) is not None:
            # after this publish is refused: close the network connection, not the broker's loop
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(handler.writer.close()))
        return False
