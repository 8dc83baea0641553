"""The real component process (``python -m loupe_edge``) against a real MQTT broker on loopback and S3 in moto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.edge_helpers import brightness_for, grey_png
from support.edge_mqtt import REPO, THING, Subscriber

from loupe_local.host.mqtt_broker import Broker, free_port


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


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    sub = Subscriber(broker.host, broker.port, login=(broker.username, broker.password))
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
            "LOUPE_MQTT_USERNAME": broker.username,  # the broker refuses anonymous clients
            "LOUPE_MQTT_PASSWORD": broker.password,
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
