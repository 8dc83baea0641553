"""The local broker's stand-in for the devices' IoT policy (template.yaml ``EdgeDevicePolicy``).

In AWS IoT Core a core device connects with its thing name as MQTT client ID (the policy's
``${iot:Connection.Thing.ThingName}`` is taken from it, and must match it exactly:
https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html) and may publish only on
``loupe/<thing>/*`` and ``$aws/things/<thing>/*``. A publish the policy denies is not delivered and IoT Core closes
the connection (the client sees a disconnect; the lifecycle event's ``disconnectReason`` is
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
import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("loupe_local.mqtt_policy")

# The iot:Publish resources of EdgeDevicePolicy, with %c standing for the connection's thing name (= client ID).
PUBLISH_PREFIXES = ("loupe/%c/", "$aws/things/%c/")


def may_publish(client_id: str | None, topic: str) -> bool:
    """Whether a client connected with ``client_id`` may publish on ``topic`` under the device policy."""
    if not client_id or any(ch in client_id for ch in "+#/"):
        return False
    return any(topic.startswith(prefix.replace("%c", client_id)) for prefix in PUBLISH_PREFIXES)


def mosquitto_acl() -> str:
    """The same rule for mosquitto (``acl_file``): ``pattern write`` with %c, read on every topic. ``pattern``
    lines apply to every client; a ``topic`` line at the top of the file would apply to anonymous clients only,
    and the broker has none."""
    lines = ["# EdgeDevicePolicy: a client publishes only under its own thing name (its client ID)", "pattern read #"]
    lines += [f"pattern write {prefix}#" for prefix in PUBLISH_PREFIXES]
    return "\n".join(lines) + "\n"


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
        if will_topic is not None and not may_publish(client_id, will_topic):
            log.warning("CONNECT refused: client %r may not publish its will on %r", client_id, will_topic)
            return False
        return True


def _password() -> str:
    return os.environ.get(PASSWORD_ENV, "")


class DevicePolicyPlugin(BaseTopicPlugin):  # type: ignore[misc,valid-type]
    """amqtt topic filter: a denied publish is dropped and its client disconnected, as IoT Core does."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None, action: Any = None) -> bool:
        if action != Action.PUBLISH:
            return True
        client_id = getattr(session, "client_id", None)
        if may_publish(client_id, topic or ""):
            return True
        log.warning("AUTHORIZATION_FAILURE: client %r may not publish on %r; disconnecting it", client_id, topic)
        broker = getattr(self.context, "_broker_instance", None)
        entry = broker._sessions.get(client_id) if broker is not None else None  # noqa: SLF001 - no public API
        handler = entry[1] if entry else None
        if handler is not None and getattr(handler, "writer", None) is not None:
            # after this publish is refused: close the network connection, not the broker's loop
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(handler.writer.close()))
        return False
