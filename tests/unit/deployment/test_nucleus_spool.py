"""The local nucleus' MQTT spooler: memory or disk per the nucleus configuration a deployment sets, what the IPC
publish answers, and how a local core device takes ``aws.greengrass.*`` entries of a deployment."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from support.device_fakes import FakeControlPlane, PublicGG, data, deploy

from loupe_edge.transport import NucleusIpcTransport, TransportError
from loupe_local.devices.ipc_auth import IpcPolicies
from loupe_local.devices.nucleus_mqtt import NucleusMqtt, Spool, open_spool, spooler_settings
from loupe_local.devices.runtime import Device, DeviceOptions

DISK = {"mqtt": {"spooler": {"storageType": "Disk", "pluginName": "aws.greengrass.DiskSpooler"}}}
APP = "com.loupe.inference"


def allowing(thing: str, topics: list[str]) -> IpcPolicies:
    """Policies that let the component APP publish to ``topics`` (and nothing else)."""
    policy = {"p": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": topics}}
    return IpcPolicies.from_configs(thing, False, {APP: {"accessControl": {"aws.greengrass.ipc.mqttproxy": policy}}})


def test_the_spooler_is_on_disk_only_with_the_plugin_deployed() -> None:
    assert spooler_settings({}, {})["storage"] == "Memory"
    assert spooler_settings(DISK, {})["storage"] == "Memory"  # configured, but the plugin is not there
    on_disk = spooler_settings(DISK, {"aws.greengrass.DiskSpooler": "1.0.6"})
    assert on_disk == {"storage": "Disk", "max_bytes": 2621440, "keep_qos0": False}


def test_a_full_spool_drops_the_oldest_messages(tmp_path: Path) -> None:
    for spool in (Spool("Memory", max_bytes=30), Spool("Disk", tmp_path / "s.db", max_bytes=30)):
        for i in range(5):
            spool.put("t", f"message-{i}".encode(), 1)  # 9 bytes each: 3 fit
        assert spool.depth() == 3 and spool.dropped == 2
        assert spool.oldest()[2] == b"message-2"
        with pytest.raises(ValueError, match="larger than the spooler"):
            spool.put("t", b"x" * 31, 1)
        spool.close()


def test_only_a_disk_spool_survives_the_nucleus(tmp_path: Path) -> None:
    for storage, left in (("Disk", 2), ("Memory", 0)):
        settings = {"storage": storage, "max_bytes": 1000, "keep_qos0": False}
        spool = open_spool(settings, tmp_path / storage)
        spool.put("loupe/t/inference", b"a", 1)
        spool.put("loupe/t/inference", b"b", 1)
        spool.close()
        again = open_spool(settings, tmp_path / storage)
        assert again.depth() == left
        again.close()


def test_publish_answers_once_spooled_and_refuses_qos0_while_offline(tmp_path: Path) -> None:
    nucleus = NucleusMqtt("t", "127.0.0.1", 9, Spool("Memory"))  # port 9: never online
    nucleus.policies = allowing("t", ["loupe/t/+"])
    nucleus.start()
    try:
        transport = NucleusIpcTransport(nucleus.address, token=nucleus.token_for(APP))
        sent = [("loupe/t/inference", f'{{"n": {i}}}'.encode()) for i in range(3)]
        assert transport.publish_many(sent, timeout=5) == 3  # accepted = in the spooler, not delivered
        assert nucleus.stats()["depth"] == 3 and nucleus.stats()["delivered"] == 0
        with pytest.raises(ConnectionError, match="keepQos0WhenOffline"):
            nucleus.publish("loupe/t/health", b"{}", 0)
        nucleus.keep_qos0 = True
        nucleus.publish("loupe/t/health", b"{}", 0)
        assert nucleus.stats()["depth"] == 4
        transport.close()
    finally:
        nucleus.stop()
    with pytest.raises(TransportError, match="unreachable"):
        NucleusIpcTransport(nucleus.address, token=nucleus.token_for(APP)).publish_many(
            [("loupe/t/inference", b"{}")], timeout=1
        )


@pytest.mark.parametrize("token", [None, "", "guessed", "{other}"])
def test_an_ipc_client_without_the_devices_token_is_refused_and_nothing_is_spooled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    """Greengrass IPC: a component authenticates with the SVCUID its nucleus gave it; any other process is refused."""
    monkeypatch.delenv("SVCUID", raising=False)
    nucleus = NucleusMqtt("t", "127.0.0.1", 9, Spool("Memory"))
    other = NucleusMqtt("u", "127.0.0.1", 9, Spool("Memory"))  # another device's nucleus: another token
    nucleus.policies = allowing("t", ["loupe/t/inference"])
    other.start()
    nucleus.start()
    try:
        given = other.token_for(APP) if token == "{other}" else token
        intruder = NucleusIpcTransport(nucleus.address, token=given)
        with pytest.raises(TransportError, match="UnauthorizedError"):
            intruder.publish_many([("loupe/t/inference", b'{"forged": true}')], timeout=2)
        # a raw client that skips the handshake and sends a publish as its first line is refused too
        with socket.create_connection(("127.0.0.1", int(nucleus.address.rsplit(":", 1)[1])), timeout=5) as sock:
            stream = sock.makefile("rwb")
            stream.write(b'{"topic": "loupe/t/inference", "payload": "e30=", "qos": 1}\n')
            stream.flush()
            assert json.loads(stream.readline())["ok"] is False
            assert stream.readline() == b""  # the nucleus closed the connection
        assert nucleus.stats()["depth"] == 0
        # the component with the token (in SVCUID, as Greengrass hands it) is accepted
        monkeypatch.setenv("SVCUID", nucleus.token_for(APP))
        assert NucleusIpcTransport(nucleus.address).publish_many([("loupe/t/inference", b"{}")], timeout=2) == 1
        assert nucleus.stats()["depth"] == 1
    finally:
        nucleus.stop()
        other.stop()


@pytest.fixture
def device(tmp_path: Path) -> Any:
    dev = Device(
        DeviceOptions(thing="t1", root=tmp_path, endpoint="http://127.0.0.1:9", settle_seconds=0.3, ack_seconds=1.5),
        FakeControlPlane(PublicGG()),
    )
    dev.control.gg.add(data("1.0.0"))
    yield dev
    dev.shutdown()


def test_a_device_takes_the_nucleus_configuration_and_keeps_it(device: Any) -> None:
    device.apply(
        {
            "deploymentId": "d1",
            "components": {
                "data": {"componentVersion": "1.0.0"},
                "aws.greengrass.Nucleus": {
                    "componentVersion": "2.12.6",
                    "configurationUpdate": {"merge": json.dumps(DISK)},
                },
                "aws.greengrass.DiskSpooler": {"componentVersion": "1.0.6"},
            },
        }
    )
    assert device.control.reports[-1][1] == "SUCCEEDED", device.control.reports
    saved = json.loads((device.layout.root / "current.json").read_text())["nucleus"]
    assert saved["plugins"] == {"aws.greengrass.DiskSpooler": "1.0.6"}
    assert spooler_settings(saved["config"], saved["plugins"])["storage"] == "Disk"
    assert "data" in device.running and "aws.greengrass.Nucleus" not in device.running  # provided, not run


def test_a_disk_spooler_that_does_not_run_in_the_device_s_nucleus_fails_the_deployment(device: Any) -> None:
    status, reason = deploy(device, "d1", {"data": "1.0.0", "aws.greengrass.DiskSpooler": "1.0.5"})
    assert status == "SUCCEEDED"  # 1.0.5 runs in the device's nucleus 2.12.6
    status, reason = deploy(
        device, "d2", {"data": "1.0.0", "aws.greengrass.Nucleus": "2.14.0", "aws.greengrass.DiskSpooler": "9.0.0"}
    )
    assert status == "FAILED" and "does not exist" in reason
    device.nucleus["version"] = "2.15.1"
    status, reason = deploy(device, "d3", {"data": "1.0.0", "aws.greengrass.DiskSpooler": "1.0.5"})
    assert status == "FAILED" and "needs aws.greengrass.Nucleus >=2.11.0 <2.15.0; the device runs 2.15.1" in reason
