"""The edge component's network in integration tests: a cuttable TCP link to the broker, and a subscriber that
collects what the component publishes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

from loupe_local.host.mqtt_broker import free_port
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
THING = "edge-it-1"


class LinkProxy:
    """A TCP forwarder between the component and the broker: ``cut()`` makes the broker unreachable for the
    component only (connections dropped, new ones refused) while test subscribers stay connected; ``restore()``
    listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(16)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the other thread
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.cut()


class Subscriber:
    """Collects everything published under loupe/<thing>/#, with a persistent session across broker restarts."""

    def __init__(self, host: str, port: int, thing: str = THING, login: tuple[str, str] | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topic = f"loupe/{thing}/#"
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"edge-it-sub-{os.getpid()}-{id(self)}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        if login:  # the local broker's username and password (it refuses anonymous clients)
            self.client.username_pw_set(*login)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def of(self, kind: str) -> list[dict]:
        return [m for _, m in self.by_thing(kind)]

    def by_thing(self, kind: str) -> list[tuple[str, dict]]:
        """``(thing, message)`` for every ``loupe/<thing>/<kind>`` message (a subscriber to ``thing="+"`` sees many)."""
        with self._lock:
            return [(t.split("/")[1], m) for t, m in self.messages if t.endswith("/" + kind)]

    def wait(self, pred, timeout: float = 30.0) -> bool:
        return bool(wait_until(lambda: pred(self), timeout, interval=0.05))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def device_doc(root: Path) -> dict:
    """A local core device's ``device.json`` (its deployments and components), or ``{}`` while it is being written."""
    try:
        return json.loads((root / "device.json").read_text())
    except (OSError, ValueError):
        return {}


def outbox_depth(work_dir: Path, queue: str = "results") -> int:
    """Entries the inference component's disk outbox (``<work dir>/outbox.sqlite``) still holds in ``queue``."""
    db = sqlite3.connect(f"file:{work_dir / 'outbox.sqlite'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM entries WHERE queue = ?", (queue,)).fetchone()[0])
    finally:
        db.close()


def publish_as_device(local_aws: Any, thing: str, topic: str, message: dict[str, Any]) -> None:
    """One QoS 1 message on ``topic`` from a client connected as ``thing`` (its client ID, the run's MQTT login), as a
    device publishes it: the local rules engine sees it as IoT Core would."""
    import paho.mqtt.client as mqtt

    from loupe_local.local_auth import mqtt_login

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=thing)
    mqtt_login(client, local_aws.credentials)
    ready = threading.Event()
    client.on_connect = lambda *a: ready.set()
    client.connect(local_aws.mqtt["host"], local_aws.mqtt["port"])
    client.loop_start()
    try:
        assert ready.wait(10)
        client.publish(topic, json.dumps(message), qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()
