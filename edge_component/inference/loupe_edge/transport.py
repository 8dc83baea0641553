"""Two transports behind one interface, plus the S3 uploader and the runtime control channel.

* ``IpcTransport``: Greengrass IPC (``GreengrassCoreIPCClientV2.publish_to_iot_core``), used on devices.
* ``MqttTransport``: plain MQTT 3.1.1 to a broker (paho-mqtt), used for local runs and tests.
* ``NucleusIpcTransport``: the local core devices' form of IPC ``PublishToIoTCore`` (``LOUPE_NUCLEUS_IPC``).

What "accepted" means differs: over MQTT a message is accepted when the broker acknowledged it (PUBACK); over
IPC (and its local form) when the nucleus put it into its spooler (``PublishToIoTCore`` answers then, before
IoT Core saw it). From then on the nucleus' spooler holds it: in memory by default, on disk when the deployment
configures ``aws.greengrass.DiskSpooler`` (see README, "Offline results").

Both publish QoS 1 and raise :class:`TransportError` when a message was not accepted, so the outbox keeps it.
``S3Uploader`` uploads feedback frames with boto3 (``AWS_ENDPOINT_URL`` is honoured by boto3 itself; on a device
the credentials come from Greengrass' token exchange service).  ``IpcControl`` / ``LocalControl`` deliver update
notifications and configuration and carry the component's state back to the runtime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

MODEL_COMPONENT = "com.loupe.model"


class TransportError(RuntimeError):
    """The network did not accept a message or an upload; the caller keeps it and retries."""


def publish_in_order(messages: list[tuple[str, bytes]], publish: Callable[[str, bytes], None]) -> int:
    """Publish one message at a time until one is refused: how many were accepted (``publish`` raises
    :class:`TransportError` on a refusal; a refused first message raises it, so the outbox keeps them all)."""
    done = 0
    for topic, payload in messages:
        try:
            publish(topic, payload)
        except TransportError:
            if done == 0:
                raise
            break
        done += 1
    return done


class Transport(Protocol):
    name: str

    def publish_many(self, messages: list[tuple[str, bytes]], timeout: float) -> int:
        """Publish in order; returns how many messages from the start of the list were accepted."""
        ...

    def connected(self) -> bool: ...

    def close(self) -> None: ...


class MqttTransport:
    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        keepalive: int = 30,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self._client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self._client.max_inflight_messages_set(100)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        if username:
            self._client.username_pw_set(username, password)
        self._connected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self.host, self.port = host, port
        self._client.connect_async(host, port, keepalive=keepalive)
        self._client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            log.info("connected to MQTT broker %s:%s", self.host, self.port)
            self._connected.set()
        else:
            log.warning("MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason_code)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            log.warning("lost connection to MQTT broker %s:%s (%s)", self.host, self.port, reason_code)
        self._connected.clear()

    def connected(self) -> bool:
        return self._connected.is_set()

    def publish_many(self, messages: list[tuple[str, bytes]], timeout: float) -> int:
        if not self._connected.is_set():
            raise TransportError("not connected to the MQTT broker")
        infos = []
        for topic, payload in messages:
            info = self._client.publish(topic, payload, qos=1)
            if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
                break
            infos.append(info)
        deadline = time.monotonic() + timeout
        done = 0
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                break
            if not info.is_published():
                break
            done += 1
        if done == 0 and messages:
            raise TransportError("the broker acknowledged nothing within the timeout")
        return done

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class IpcTransport:
    """Publishes through the Greengrass nucleus (which forwards to AWS IoT Core)."""

    name = "ipc"

    def __init__(self, client: Any) -> None:
        self._client = client

    def publish_many(self, messages: list[tuple[str, bytes]], timeout: float) -> int:
        from awsiot.greengrasscoreipc.model import QOS

        def publish(topic: str, payload: bytes) -> None:
            try:
                self._client.publish_to_iot_core(topic_name=topic, qos=QOS.AT_LEAST_ONCE, payload=payload)
            except Exception as exc:
                raise TransportError(f"PublishToIoTCore failed: {exc}") from exc

        return publish_in_order(messages, publish)

    def connected(self) -> bool:
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection
            self._client.close()


class NucleusIpcTransport:
    """PublishToIoTCore through a local core device's nucleus (one JSON line per message on a loopback socket):
    accepted once the nucleus spooled the message, like the Greengrass IPC call. The connection first
    authenticates with the token the nucleus gave the component (``SVCUID``), as Greengrass IPC clients do."""

    name = "nucleus"

    def __init__(self, address: str, timeout: float = 5.0, token: str | None = None) -> None:
        self._token = os.environ.get("SVCUID", "") if token is None else token
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            raise RuntimeError(f"LOUPE_NUCLEUS_IPC must be host:port of the nucleus IPC endpoint, not {address!r}")
        self._address = (host or "127.0.0.1", int(port))
        self._timeout = timeout
        self._sock: Any = None
        self._file: Any = None

    def _connect(self) -> None:
        import socket

        if self._sock is None:
            import json

            self._sock = socket.create_connection(self._address, timeout=self._timeout)
            self._file = self._sock.makefile("rwb")
            self._file.write(json.dumps({"authToken": self._token}).encode() + b"\n")
            self._file.flush()
            reply = json.loads(self._file.readline() or b"{}")
            if not reply.get("ok"):
                self._drop()
                raise TransportError(f"the nucleus refused the IPC connection: {reply.get('error')}")

    def _drop(self) -> None:
        for part in (self._file, self._sock):
            with contextlib.suppress(Exception):  # closing a dead connection
                part.close()
        self._sock = self._file = None

    def publish_many(self, messages: list[tuple[str, bytes]], timeout: float) -> int:
        import base64
        import json

        def publish(topic: str, payload: bytes) -> None:
            try:
                self._connect()
                req = {"topic": topic, "payload": base64.b64encode(payload).decode(), "qos": 1}
                self._file.write(json.dumps(req).encode() + b"\n")
                self._file.flush()
                reply = json.loads(self._file.readline() or b"{}")
            except (OSError, ValueError) as exc:
                self._drop()
                reply = {"ok": False, "error": f"nucleus IPC unreachable: {exc}"}
            if not reply.get("ok"):
                raise TransportError(f"PublishToIoTCore failed: {reply.get('error')}")

        return publish_in_order(messages, publish)

    def connected(self) -> bool:
        return True

    def close(self) -> None:
        self._drop()


class Uploader(Protocol):
    def put(self, bucket: str, key: str, body: bytes, content_type: str, metadata: dict[str, str]) -> None: ...


class S3Uploader:
    """boto3 S3 uploads; the client (botocore weighs ~30 MB of RSS) is created at the first upload."""

    def __init__(self, client: Any = None) -> None:
        self._s3 = client
        self._lock = threading.Lock()

    def _client(self) -> Any:
        with self._lock:
            if self._s3 is None:
                import boto3
                from botocore.config import Config

                self._s3 = boto3.client(
                    "s3",
                    config=Config(connect_timeout=3, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"}),
                )
            return self._s3

    def put(self, bucket: str, key: str, body: bytes, content_type: str, metadata: dict[str, str]) -> None:
        try:
            self._client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, Metadata=metadata)
        except Exception as exc:
            raise TransportError(f"upload to s3://{bucket}/{key} failed: {exc}") from exc


# -- runtime control ------------------------------------------------------------------------------------
class Control(Protocol):
    def start(self, on_update: Callable[[str], None]) -> None: ...

    def configuration(self) -> dict | None: ...

    def report(self, ok: bool, reason: str = "") -> None: ...

    def close(self) -> None: ...


class IpcControl:
    """Greengrass: component-update and configuration notifications, configuration reads, state reports."""

    def __init__(self, client: Any, config_key: str = "settings") -> None:
        self._client = client
        self._key = config_key
        self._ops: list[Any] = []
        self._reported: bool | None = None

    def start(self, on_update: Callable[[str], None]) -> None:
        def on_component_event(event: Any) -> None:
            pre = getattr(event, "pre_update_event", None)
            post = getattr(event, "post_update_event", None)
            if pre is not None:
                # Nothing to finish: the running model keeps serving until the new one has been verified.
                try:
                    self._client.defer_component_update(
                        deployment_id=pre.deployment_id, message="ready", recheck_after_ms=0
                    )
                except Exception as exc:
                    log.warning("could not acknowledge pre-update of %s: %s", pre.deployment_id, exc)
            if post is not None:
                on_update(f"deployment {post.deployment_id}")

        def on_error(exc: Exception) -> bool:
            log.warning("IPC stream error: %s", exc)
            return False  # keep the stream open

        _, op = self._client.subscribe_to_component_updates(
            on_stream_event=on_component_event, on_stream_error=on_error
        )
        self._ops.append(op)
        for component in (None, MODEL_COMPONENT):
            try:
                _, op = self._client.subscribe_to_configuration_update(
                    component_name=component,
                    key_path=[],
                    on_stream_event=lambda ev, c=component: on_update(f"configuration of {c or 'self'}"),
                    on_stream_error=on_error,
                )
                self._ops.append(op)
            except Exception as exc:
                log.warning("cannot subscribe to configuration of %s: %s", component or "self", exc)

    def configuration(self) -> dict | None:
        try:
            resp = self._client.get_configuration(key_path=[self._key])
        except Exception as exc:
            log.warning("cannot read component configuration over IPC: %s", exc)
            return None
        value = resp.value or {}
        return value.get(self._key, value) if isinstance(value, dict) else None

    def report(self, ok: bool, reason: str = "") -> None:
        if self._reported is ok:
            return
        try:
            self._client.update_state(state="RUNNING" if ok else "ERRORED")
            self._reported = ok
        except Exception as exc:
            log.warning("cannot report state to Greengrass: %s", exc)

    def close(self) -> None:
        for op in self._ops:
            with contextlib.suppress(Exception):  # best effort on shutdown
                op.close()


class LocalControl:
    """Outside Greengrass: SIGHUP asks for a model/config re-check; state goes to logs and the status file."""

    def __init__(self) -> None:
        self._on_update: Callable[[str], None] | None = None

    def start(self, on_update: Callable[[str], None]) -> None:
        self._on_update = on_update
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: on_update("SIGHUP"))

    def configuration(self) -> dict | None:
        return None

    def report(self, ok: bool, reason: str = "") -> None:
        if not ok:
            log.error("component state ERRORED: %s", reason)

    def close(self) -> None:
        return None


def ipc_client_from_env() -> Any:
    """The real Greengrass IPC client (only available inside a Greengrass component)."""
    if not os.environ.get("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"):
        raise RuntimeError("not running under Greengrass (no IPC socket); set LOUPE_TRANSPORT=mqtt for local runs")
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    return GreengrassCoreIPCClientV2()
