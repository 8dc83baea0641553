"""A local MQTT broker on 127.0.0.1 standing in for AWS IoT Core's message broker.

Uses ``mosquitto`` when it is on PATH (Debian package ``mosquitto``), otherwise ``amqtt`` (pure Python) in a
subprocess.  Either way the broker is a child process on a free loopback port, so it can be stopped and started
again on the same port (tests use that to simulate an outage).

    with Broker() as (host, port):
        ...

``LOUPE_MQTT_BROKER=mosquitto|amqtt`` forces one implementation.

Both refuse anonymous clients: a client logs in with the run's MQTT password (``Broker.username`` /
``Broker.password``, derived from the local AWS's per-run credential; ``loupe_local.local_auth.mqtt_login``).
Both enforce the devices' IoT policy (``loupe_local.host.mqtt_policy``): a client publishes only on
``loupe/<its client ID>/...`` (the client ID is the thing name, as in IoT Core), its will message included, and
only where the stack's core-device policy (``device_policy``, the runtime passes EdgeDevicePolicy) allows it: amqtt
evaluates it per client; mosquitto's ACL cannot match part of a topic level, so it keeps a prefix only where the
policy lets some core device publish under it (a policy of thing variables alone lets none). amqtt
drops a denied publish and disconnects the client, as IoT Core does; mosquitto's ACL drops it but keeps the
connection. The password reaches mosquitto as a PBKDF2-SHA512 ``password_file`` entry (its ``$7$`` format) and
amqtt through its environment, never a command line other users can read.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loupe_local.host.mqtt_policy import PASSWORD_ENV, POLICY_ENV, CoreDevicePolicy
from loupe_local.local_auth import MQTT_USERNAME, RunCredentials, mqtt_password
from loupe_local.private_files import private_dir, write_private

_AMQTT_MAIN = """
import asyncio, sys
from amqtt.broker import Broker

async def main(port):
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {
            "loupe_local.host.mqtt_policy.DeviceAuthPlugin": {},
            "loupe_local.host.mqtt_policy.DevicePolicyPlugin": {},
        },
    }
    broker = Broker(config)
    await broker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1])))
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _accepting(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class BrokerError(RuntimeError):
    pass


class Broker:
    """``start() -> (host, port)``, ``stop()`` (restartable on the same port), ``close()``, context manager."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        implementation: str | None = None,
        state_dir: str | Path | None = None,
        persistent: bool = False,
        credentials: RunCredentials | None = None,
        device_policy: CoreDevicePolicy | None = None,
    ) -> None:
        """``credentials``: the run's credential the MQTT password derives from (default: the one in the
        environment, else a fresh one: read ``username``/``password`` to log clients in). ``device_policy``: the
        stack's core-device IoT policy, which devices' publishes must also satisfy (``mqtt_policy``)."""
        self.host = host
        self.device_policy = device_policy
        creds = credentials or RunCredentials.from_env() or RunCredentials.generate()
        self.username, self.password = MQTT_USERNAME, mqtt_password(creds)
        self.port = port or free_port(host)
        choice = implementation or os.environ.get("LOUPE_MQTT_BROKER") or "auto"
        if choice == "auto":
            choice = "mosquitto" if shutil.which("mosquitto") else "amqtt"
        if choice not in ("mosquitto", "amqtt"):
            raise BrokerError(f"unknown broker implementation {choice!r} (mosquitto | amqtt)")
        self.implementation = self.kind = choice
        # persistent (mosquitto only): sessions and queued QoS 1 messages survive a stop/start, like IoT Core's
        self.persistent = persistent and choice == "mosquitto"
        self._proc: subprocess.Popen | None = None
        if state_dir is not None:
            self._dir = private_dir(Path(state_dir) / "mqtt")
            self._own_dir = False
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="loupe-mqtt-"))
            self._own_dir = True
        self._log = self._dir / "broker.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> tuple[str, int]:
        if self.running:
            return self.host, self.port
        if self.implementation == "mosquitto":
            conf = self._dir / "mosquitto.conf"
            persistence = (
                f"persistence true\npersistence_location {self._dir}/\n" if self.persistent else "persistence false\n"
            )
            from loupe_local.host.mqtt_policy import mosquitto_acl

            acl = self._dir / "device-policy.acl"
            acl.write_text(mosquitto_acl(self.device_policy))
            passwords = write_private(self._dir / "passwords", mosquitto_password_line(self.username, self.password))
            # Started as root, mosquitto drops to the `mosquitto` user before it reads the ACL and the persistence
            # folder, which live in this process's private state dir: stay the user who owns them (mosquitto.conf
            # `user`; it has no effect when not started as root).
            owner = f"user {getpass.getuser()}\n"
            conf.write_text(
                f"listener {self.port} {self.host}\n{owner}allow_anonymous false\npassword_file {passwords}\n"
                f"{persistence}acl_file {acl}\nmax_queued_messages 100000\nlog_dest stdout\n"
            )
            cmd = [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)]
        else:
            cmd = [sys.executable, "-c", _AMQTT_MAIN, str(self.port)]
        env = {**os.environ, PASSWORD_ENV: self.password}
        env.pop(POLICY_ENV, None)
        if self.device_policy is not None:
            policy_file = write_private(self._dir / "device-policy.json", self.device_policy.to_json())
            env[POLICY_ENV] = str(policy_file)
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"{self.implementation} exited with {self._proc.returncode}: {self._log.read_text()[-2000:]}"
                )
            if _accepting(self.host, self.port):
                return self.host, self.port
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"{self.implementation} did not listen on {self.host}:{self.port} within {timeout}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while _accepting(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> tuple[str, int]:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def mosquitto_password_line(username: str, password: str, iterations: int = 101) -> str:
    """A mosquitto 2 ``password_file`` line: ``user:$7$<iterations>$<salt>$<PBKDF2-HMAC-SHA512>``, as
    ``mosquitto_passwd`` writes it (12 bytes of salt, base64)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


LocalBroker = MqttBroker = Broker
