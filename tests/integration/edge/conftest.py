"""The real component process (``python -m loupe_edge``) against a real MQTT broker on loopback and S3 in moto."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "edge"))  # edge_helpers (test models)

from edge_helpers import brightness_for, grey_png  # noqa: E402

from loupe_local.mqtt_broker import Broker, free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
THING = "edge-it-1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(state_dir=tmp_path, persistent=True)
    b.start()
    try:
        yield b
    finally:
        b.close()


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

    def __init__(self, host: str, port: int, thing: str = THING) -> None:
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
        with self._lock:
            return [m for t, m in self.messages if t.endswith("/" + kind)]

    def wait(self, pred, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self):
                return True
            time.sleep(0.05)
        return pred(self)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    sub = Subscriber(broker.host, broker.port)
    try:
        yield sub
    finally:
        sub.close()


class Component:
    """``python -m loupe_edge`` as the local Greengrass stand-in runs it: env transport, JSON configuration."""

    def __init__(
        self,
        root: Path,
        broker: Broker,
        s3_endpoint: str,
        config: dict,
        mqtt_port: int | None = None,
    ) -> None:
        self.root = root
        self.frames = root / "frames"
        self.work = root / "greengrass" / "work" / "com.loupe.inference"
        self.pointer = root / "greengrass" / "work" / "com.loupe.model" / "current.json"
        self.frames.mkdir(parents=True, exist_ok=True)
        base = {
            "source": {"path": str(self.frames), "settleMs": 50, "pollMs": 20},
            "health": {"intervalSeconds": 0.5},
            "outbox": {"retrySeconds": 0.2},
            "model": {"pollSeconds": 0.3},
        }
        for k, v in config.items():
            base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
        self.config = base
        self.env = {
            **os.environ,
            "LOUPE_TRANSPORT": "mqtt",
            "LOUPE_MQTT_HOST": broker.host,
            "LOUPE_MQTT_PORT": str(mqtt_port or broker.port),
            "AWS_ENDPOINT_URL": s3_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONPATH": str(REPO / "edge_component" / "inference"),
        }
        self.proc: subprocess.Popen | None = None
        self.log = root / "component.log"
        self.seq = 0

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "loupe_edge",
            "--thing",
            THING,
            "--work-dir",
            str(self.work),
            "--config-json",
            json.dumps(self.config),
        ]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def drop(self, score: float, name: str | None = None) -> str:
        """Write a frame the way a camera does (temp name, then rename) whose test-model confidence is ``score``."""
        self.seq += 1
        name = name or f"frame-{self.seq:04d}.png"
        tmp = self.frames / f".{name}.tmp"
        tmp.write_bytes(grey_png(brightness_for(score, 64)))
        tmp.rename(self.frames / name)
        return name

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def component(tmp_path: Path, broker: Broker, s3_endpoint: str) -> Iterator:
    made: list[Component] = []

    def make(config: dict | None = None, mqtt_port: int | None = None, s3_url: str | None = None) -> Component:
        c = Component(tmp_path / f"c{len(made)}", broker, s3_url or s3_endpoint, config or {}, mqtt_port)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()
