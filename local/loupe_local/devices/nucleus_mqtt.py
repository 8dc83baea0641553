"""The local form of a nucleus' MQTT connection to AWS IoT Core and its spooler.

On a Greengrass core, a component's IPC ``PublishToIoTCore`` returns once the nucleus' MQTT client has put the
message into its **spooler** — not when IoT Core acknowledged it (``MqttProxyIPCAgent`` in
aws-greengrass-nucleus answers right after ``mqttClient.publish`` accepted the message). The spooler then sends
the messages, oldest first, whenever the device is online. By default it is in **memory** (nucleus
configuration ``mqtt.spooler``: ``storageType`` ``Memory``, ``maxSizeInBytes`` 2.5 MB — the oldest messages are
dropped to make room — and ``keepQos0WhenOffline`` false: QoS 0 messages are not spooled while offline), so what
it holds is lost when the nucleus restarts. With ``storageType: Disk`` and ``pluginName:
aws.greengrass.DiskSpooler`` (the Disk spooler component, nucleus 2.11.0 or later) the spool is on disk and
survives a restart. Sources: Greengrass developer guide, "Greengrass nucleus" (configuration, ``mqtt.spooler``)
and "Disk spooler".

Here: :class:`Spool` (memory or SQLite on disk), :class:`NucleusMqtt` (one MQTT connection per device, client ID
= thing name, QoS as asked, a message leaves the spool only after the broker's PUBACK) and a loopback IPC
endpoint: one JSON line per request ``{"topic", "payload" (base64), "qos"}``, answered ``{"ok": true}`` once
spooled or ``{"ok": false, "error"}``. Components find it in ``LOUPE_NUCLEUS_IPC`` (``host:port``).

A connection must first authenticate, as a Greengrass IPC client does with the token the nucleus put in its
environment (``SVCUID``; the developer guide's "Connect to the AWS IoT Greengrass Core IPC service": the client's
connect message carries it as ``authToken``): its first line is ``{"authToken": "<SVCUID>"}``, answered
``{"ok": true}``, or ``{"ok": false, "error": "UnauthorizedError: ..."}`` and the connection is closed. Each
nucleus makes a random token per component, so another local process (or device) cannot publish as this device,
and the token tells the nucleus which component calls. Each publish is then authorized against that component's
``accessControl`` (``loupe_local.devices.ipc_auth``): a topic no policy allows is answered ``{"ok": false, "error":
"UnauthorizedError: Principal ... is not authorized ..."}`` and nothing is spooled.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hmac
import json
import logging
import secrets
import socketserver
import sqlite3
import threading
from pathlib import Path
from typing import Any

from loupe_local.devices.ipc_auth import MQTT_PROXY, PUBLISH_TO_IOT_CORE, IpcPolicies, Unauthorized
from loupe_local.local_auth import RunCredentials, mqtt_login

log = logging.getLogger("loupe_local.devices.nucleus_mqtt")

NUCLEUS = "aws.greengrass.Nucleus"
DISK_SPOOLER = "aws.greengrass.DiskSpooler"
SPOOLER_DEFAULTS: dict[str, Any] = {"storageType": "Memory", "maxSizeInBytes": 2621440, "keepQos0WhenOffline": False}


def spooler_settings(nucleus_config: dict[str, Any], plugins: dict[str, str]) -> dict[str, Any]:
    """The effective spooler: ``storage`` is ``Disk`` only when the configuration asks for the disk spooler
    plugin and that plugin is deployed; anything else spools in memory."""
    cfg: dict[str, Any] = {**SPOOLER_DEFAULTS, **(((nucleus_config or {}).get("mqtt") or {}).get("spooler") or {})}
    disk = str(cfg.get("storageType", "")).lower() == "disk" and cfg.get("pluginName") == DISK_SPOOLER
    if disk and DISK_SPOOLER not in plugins:
        log.warning("mqtt.spooler asks for %s, which is not deployed: spooling in memory", DISK_SPOOLER)
        disk = False
    return {
        "storage": "Disk" if disk else "Memory",
        "max_bytes": int(cfg.get("maxSizeInBytes") or SPOOLER_DEFAULTS["maxSizeInBytes"]),
        "keep_qos0": bool(cfg.get("keepQos0WhenOffline")),
    }


class Spool:
    """FIFO of (topic, payload, qos) bounded in bytes; the oldest go first when a new message does not fit."""

    def __init__(self, storage: str, path: Path | None = None, max_bytes: int = 2621440) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lock = threading.Lock()
        self._mem: collections.deque[tuple[int, str, bytes, int]] = collections.deque()
        self._next = 1
        self._db: sqlite3.Connection | None = None
        if storage == "Disk":
            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a message the nucleus accepted must be on disk
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
                " payload BLOB NOT NULL, qos INTEGER NOT NULL)"
            )

    def _size(self) -> int:
        if self._db is not None:
            return int(self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM spool").fetchone()[0])
        return sum(len(m[2]) for m in self._mem)

    def put(self, topic: str, payload: bytes, qos: int) -> None:
        with self._lock:
            if len(payload) > self.max_bytes:
                raise ValueError(f"message of {len(payload)} bytes is larger than the spooler ({self.max_bytes})")
            while self._size() + len(payload) > self.max_bytes:
                self._drop_oldest()
            if self._db is not None:
                self._db.execute("INSERT INTO spool (topic, payload, qos) VALUES (?, ?, ?)", (topic, payload, qos))
            else:
                self._mem.append((self._next, topic, payload, qos))
                self._next += 1

    def _drop_oldest(self) -> None:
        self.dropped += 1
        if self._db is not None:
            self._db.execute("DELETE FROM spool WHERE id = (SELECT MIN(id) FROM spool)")
        elif self._mem:
            self._mem.popleft()

    def oldest(self) -> tuple[int, str, bytes, int] | None:
        with self._lock:
            if self._db is not None:
                row = self._db.execute("SELECT id, topic, payload, qos FROM spool ORDER BY id LIMIT 1").fetchone()
                return (row[0], row[1], bytes(row[2]), row[3]) if row else None
            return self._mem[0] if self._mem else None

    def remove(self, msg_id: int) -> None:
        with self._lock:
            if self._db is not None:
                self._db.execute("DELETE FROM spool WHERE id = ?", (msg_id,))
            elif self._mem and self._mem[0][0] == msg_id:
                self._mem.popleft()

    def depth(self) -> int:
        with self._lock:
            if self._db is not None:
                return int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])
            return len(self._mem)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._mem.clear()  # memory spooling: what was not sent is gone with the nucleus


class NucleusMqtt:
    """The device's MQTT client for IoT Core plus the IPC endpoint components publish through."""

    def __init__(
        self,
        thing: str,
        host: str,
        port: int,
        spool: Spool,
        keep_qos0: bool = False,
        credentials: RunCredentials | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.thing = thing
        self._tokens: dict[str, str] = {}  # SVCUID -> component: each component authenticates with its own
        self._tokens_lock = threading.Lock()
        self.policies = IpcPolicies(thing)  # no policy, no call: the device sets its components' accessControl
        self.spool = spool
        self.keep_qos0 = keep_qos0
        self.delivered = 0
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._online = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=thing,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        creds = credentials or RunCredentials.from_env()
        if creds is not None:
            mqtt_login(self._client, creds)
        self._client.on_connect = lambda c, u, f, rc, p: self._set_online(not rc.is_failure)
        self._client.on_disconnect = lambda c, u, f, rc, p: self._set_online(False)
        self._client.connect_async(host, port, keepalive=10)
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                component = self._authenticated()
                if component is None:
                    return
                for line in self.rfile:
                    try:
                        req = json.loads(line)
                        payload = base64.b64decode(req.get("payload") or "")
                        outer.publish_as(component, str(req["topic"]), payload, int(req["qos"]))
                        reply: dict[str, Any] = {"ok": True}
                    except Unauthorized as exc:
                        log.warning("nucleus IPC: %s", exc)
                        reply = {"ok": False, "error": f"UnauthorizedError: {exc}"}
                    except Exception as exc:  # noqa: BLE001 - every failure is an answer to the component
                        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    self.wfile.write(json.dumps(reply).encode() + b"\n")
                    self.wfile.flush()

            def _authenticated(self) -> str | None:
                try:
                    token = json.loads(self.rfile.readline() or b"{}").get("authToken")
                except (ValueError, AttributeError):
                    token = None
                component = outer.component_of(token)
                refused = "UnauthorizedError: invalid or missing authToken"
                reply = {"ok": True} if component is not None else {"ok": False, "error": refused}
                if component is None:
                    log.warning("nucleus IPC: refused a connection without this device's authToken (SVCUID)")
                self.wfile.write(json.dumps(reply).encode() + b"\n")
                self.wfile.flush()
                return component

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = "{}:{}".format(*self._server.server_address)
        self._threads: list[threading.Thread] = []

    def token_for(self, component: str) -> str:
        """The SVCUID this nucleus gives ``component`` (one random token per component and nucleus run)."""
        with self._tokens_lock:
            for token, name in self._tokens.items():
                if name == component:
                    return token
            token = secrets.token_urlsafe(32)
            self._tokens[token] = component
            return token

    def component_of(self, token: Any) -> str | None:
        """The component a token was given to, or None (compared in constant time)."""
        if not isinstance(token, str):
            return None
        with self._tokens_lock:
            known = list(self._tokens.items())
        found = None
        for candidate, name in known:
            if hmac.compare_digest(candidate.encode(), token.encode()):
                found = name
        return found

    def publish_as(self, component: str, topic: str, payload: bytes, qos: int) -> None:
        """IPC PublishToIoTCore from ``component``: authorized by its policies, then spooled."""
        self.policies.check(component, MQTT_PROXY, PUBLISH_TO_IOT_CORE, topic)
        self.publish(topic, payload, qos)

    def _set_online(self, online: bool) -> None:
        (self._online.set if online else self._online.clear)()
        with self._wake:
            self._wake.notify_all()

    def start(self) -> None:
        self._client.loop_start()
        for target in (self._server.serve_forever, self._send_loop):
            t = threading.Thread(target=target, daemon=True, name=f"nucleus-{target.__name__}")
            t.start()
            self._threads.append(t)

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """What PublishToIoTCore does: spool (or refuse); delivery happens later, in order."""
        if qos not in (0, 1):
            raise ValueError(f"QoS {qos} is not 0 or 1")
        if qos == 0 and not self._online.is_set() and not self.keep_qos0:
            raise ConnectionError("the device is offline and keepQos0WhenOffline is false: QoS 0 message dropped")
        self.spool.put(topic, payload, qos)
        with self._wake:
            self._wake.notify_all()

    def set_spool(self, spool: Spool, keep_qos0: bool) -> None:
        """A new spooler configuration (the real nucleus restarts for it: a memory spool's content is lost)."""
        with self._wake:
            old, self.spool, self.keep_qos0 = self.spool, spool, keep_qos0
            self._wake.notify_all()
        old.close()

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                while not self._stop.is_set() and not (self._online.is_set() and self.spool.depth()):
                    self._wake.wait(1.0)
            if self._stop.is_set():
                return
            spool = self.spool
            try:
                msg = spool.oldest()
            except sqlite3.Error:  # the spool was just replaced (a new spooler configuration)
                continue
            if msg is None:
                continue
            msg_id, topic, payload, qos = msg
            info = self._client.publish(topic, payload, qos=qos)
            with contextlib.suppress(RuntimeError, ValueError):  # not queued: the connection just went away
                info.wait_for_publish(10.0)
            if info.is_published():
                with contextlib.suppress(sqlite3.Error):
                    spool.remove(msg_id)  # QoS 1: the broker's PUBACK arrived; QoS 0: written to the socket
                self.delivered += 1
            else:
                self._stop.wait(0.5)  # offline again: the message stays first in the spool

    def stats(self) -> dict[str, Any]:
        return {
            "storage": self.spool.storage,
            "depth": self.spool.depth(),
            "dropped": self.spool.dropped,
            "delivered": self.delivered,
            "connected": self._online.is_set(),
            "ipc": self.address,
        }

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for t in self._threads:
            t.join(timeout=12)
        with contextlib.suppress(Exception):  # closing a dead connection
            self._client.disconnect()
        self._client.loop_stop()
        self.spool.close()


def open_spool(settings: dict[str, Any], work_root: Path) -> Spool:
    path = work_root / DISK_SPOOLER / "spooler.db" if settings["storage"] == "Disk" else None
    return Spool(settings["storage"], path, settings["max_bytes"])
