"""The local broker's stand-in for the devices' IoT policy (template.yaml ``EdgeDevicePolicy``).

In AWS IoT Core a core device connects with its thing name as MQTT client ID (the policy's
``${iot:Connection.Thing.ThingName}`` is taken from it, and must match it exactly:
https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html) and may publish only on
``loupe/<thing>/*`` and ``$aws/things/<thing>/*``. A publish the policy denies is not delivered and IoT Core closes
the connection (the client sees a disconnect; the lifecycle event's ``disconnectReason`` is
``AUTHORIZATION_FAILURE``: https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html).

Locally there are no certificates: the client ID is the identity, exactly as in the policy. ``may_publish`` is the
rule; ``DevicePolicyPlugin`` enforces it in amqtt (drop + disconnect); ``mosquitto_acl`` writes the same rule as a
mosquitto ACL (mosquitto drops the message but keeps the connection: the one difference, see mqtt_broker).
Subscriptions are not restricted locally (the rules engine and tools subscribe to ``loupe/+/...``).
"""

from __future__ import annotations

import asyncio
import logging
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
    """The same rule for mosquitto (``acl_file``): ``pattern write`` with %c, read on every topic."""
    lines = ["# EdgeDevicePolicy: a client publishes only under its own thing name (its client ID)", "topic read #"]
    lines += [f"pattern write {prefix}#" for prefix in PUBLISH_PREFIXES]
    return "\n".join(lines) + "\n"


try:
    from amqtt.contexts import Action
    from amqtt.plugins.base import BaseTopicPlugin
except ImportError:  # mosquitto-only environments
    BaseTopicPlugin = object  # type: ignore[assignment,misc]
    Action = None  # type: ignore[assignment,misc]


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
