"""IPC authorization on a local nucleus: each call is checked against the calling component's ``accessControl``,
with MQTT wildcards, and ``{iot:thingName}`` only replaced where the nucleus interpolates component configuration
(nucleus 2.6.0 or later and ``interpolateComponentConfiguration: true``; developer guide, "Use the IPC service" >
authorization policies, and "Greengrass nucleus" configuration)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.device_fakes import FakeControlPlane, PublicGG, recipe

from loupe_edge.transport import NucleusIpcTransport, TransportError
from loupe_local.devices.ipc_auth import MQTT_PROXY, PUBLISH_TO_IOT_CORE, IpcPolicies, Unauthorized, interpolates
from loupe_local.devices.nucleus_mqtt import NucleusMqtt, Spool
from loupe_local.devices.runtime import Device, DeviceOptions

REPO = Path(__file__).resolve().parents[3]
INFERENCE_CONFIG = yaml.safe_load((REPO / "edge_component" / "inference" / "recipe.yaml").read_text())[
    "ComponentConfiguration"
]["DefaultConfiguration"]


def policies(resources: list[str], operations: list[str] | None = None, interpolate: bool = False) -> IpcPolicies:
    acl = {MQTT_PROXY: {"p1": {"operations": operations or [PUBLISH_TO_IOT_CORE], "resources": resources}}}
    return IpcPolicies.from_configs("dev-1", interpolate, {"app": {"accessControl": acl}})


def allowed(p: IpcPolicies, topic: str, component: str = "app", operation: str = PUBLISH_TO_IOT_CORE) -> bool:
    try:
        p.check(component, MQTT_PROXY, operation, topic)
    except Unauthorized:
        return False
    return True


def test_mqtt_wildcards_glob_and_escapes_match_as_documented() -> None:
    p = policies(["a/+/c", "b/#", "x*y", "lit/${+}/${#}", "d/e+f"])
    assert allowed(p, "a/anything/c") and not allowed(p, "a/one/two/c") and not allowed(p, "a/x/c/d")
    assert allowed(p, "b") and allowed(p, "b/1/2/3") and not allowed(p, "bb/1")
    assert allowed(p, "x/any/thing/y") and not allowed(p, "x/any/thing/z")
    assert allowed(p, "lit/+/#") and not allowed(p, "lit/a/b")
    assert allowed(p, "d/e+f") and not allowed(p, "d/eXf")  # '+' inside a level is a literal character
    assert allowed(policies(["*"]), "any/topic/at/all") and allowed(policies(["#"]), "any/topic")


def test_no_policy_another_component_or_another_operation_is_refused() -> None:
    p = policies(["loupe/dev-1/inference"])
    assert allowed(p, "loupe/dev-1/inference")
    assert not allowed(p, "loupe/dev-1/inference", component="other")
    assert not allowed(p, "loupe/dev-1/inference", operation="aws.greengrass#SubscribeToIoTCore")
    assert allowed(policies(["loupe/dev-1/inference"], ["*"]), "loupe/dev-1/inference", operation="anything")
    with pytest.raises(Unauthorized, match="Principal other is not authorized to perform aws.greengrass.ipc.mqttproxy"):
        p.check("other", MQTT_PROXY, PUBLISH_TO_IOT_CORE, "loupe/dev-1/inference")


def test_the_thing_name_variable_is_replaced_only_where_the_nucleus_interpolates() -> None:
    assert not interpolates("2.12.6", {})  # default false
    assert not interpolates("2.5.6", {"interpolateComponentConfiguration": True})  # the option came with 2.6.0
    assert interpolates("2.6.0", {"interpolateComponentConfiguration": True})
    assert interpolates("2.14.0", {"interpolateComponentConfiguration": "true"})
    configs = {"com.loupe.inference": INFERENCE_CONFIG}
    literal = IpcPolicies.from_configs("dev-1", False, configs)
    interpolated = IpcPolicies.from_configs("dev-1", True, configs)
    for topic in ("loupe/dev-1/inference", "loupe/dev-1/low-confidence", "loupe/dev-1/health"):
        assert not allowed(literal, topic, "com.loupe.inference")
        assert allowed(interpolated, topic, "com.loupe.inference")
    assert not allowed(interpolated, "loupe/dev-2/inference", "com.loupe.inference")  # another thing's topic
    assert not allowed(interpolated, "loupe/dev-1/other", "com.loupe.inference")


def test_the_nucleus_ipc_refuses_an_unauthorized_publish_and_spools_nothing() -> None:
    nucleus = NucleusMqtt("dev-1", "127.0.0.1", 9, Spool("Memory"))  # port 9: never online, QoS 1 spools
    nucleus.policies = IpcPolicies.from_configs("dev-1", False, {"com.loupe.inference": INFERENCE_CONFIG})
    nucleus.start()
    try:
        token = nucleus.token_for("com.loupe.inference")
        assert token != nucleus.token_for("another.component")  # one token per component
        message = [("loupe/dev-1/inference", b"{}")]
        with pytest.raises(TransportError, match="UnauthorizedError: Principal com.loupe.inference is not auth"):
            NucleusIpcTransport(nucleus.address, token=token).publish_many(message, timeout=2)
        assert nucleus.stats()["depth"] == 0
        nucleus.policies = IpcPolicies.from_configs("dev-1", True, {"com.loupe.inference": INFERENCE_CONFIG})
        assert NucleusIpcTransport(nucleus.address, token=token).publish_many(message, timeout=2) == 1
        # another component's token is that component: the inference component's policy does not cover it
        with pytest.raises(TransportError, match="Principal another.component is not authorized"):
            NucleusIpcTransport(nucleus.address, token=nucleus.token_for("another.component")).publish_many(
                message, timeout=2
            )
        assert nucleus.stats()["depth"] == 1
    finally:
        nucleus.stop()


# A component that publishes once through its nucleus' IPC (as loupe_edge does) and reports the answer.
PUBLISHER = (
    f'{sys.executable} -c "import json, os; from loupe_edge.transport import NucleusIpcTransport as T\n'
    "try:\n"
    "    T(os.environ['LOUPE_NUCLEUS_IPC']).publish_many([('loupe/' + os.environ['AWS_IOT_THING_NAME'] + "
    "'/inference', b'{}')], timeout=5); r = {'state': 'RUNNING', 'published': True}\n"
    "except Exception as e:\n"
    "    r = {'state': 'RUNNING', 'published': False, 'error': str(e)}\n"
    "open('status.json', 'w').write(json.dumps(r))\"; exec sleep 30"
)


@pytest.fixture
def device(tmp_path: Path) -> Any:
    dev = Device(
        DeviceOptions(
            thing="dev-1",
            root=tmp_path,
            endpoint="http://127.0.0.1:9",
            settle_seconds=0.3,
            ack_seconds=8.0,
            mqtt_host="127.0.0.1",
            mqtt_port=9,  # the broker is never reached: an accepted publish waits in the spooler
            nucleus_mqtt=True,
        ),
        FakeControlPlane(PublicGG()),
    )
    pub = recipe("com.loupe.inference", "1.0.0", {"Run": PUBLISHER})
    pub["ComponentConfiguration"]["DefaultConfiguration"] = {"accessControl": INFERENCE_CONFIG["accessControl"]}
    dev.control.gg.add(pub)
    dev.control.gg.add({**pub, "ComponentVersion": "1.1.0"})
    dev._start_nucleus_mqtt()
    yield dev
    dev.shutdown()


def published(dev: Any) -> dict[str, Any]:
    return json.loads((dev.layout.work("com.loupe.inference") / "status.json").read_text())


def test_a_device_authorizes_its_components_publishes_with_the_nucleus_interpolation_setting(device: Any) -> None:
    """The inference component's policy names ``loupe/{iot:thingName}/...``: on a nucleus that does not
    interpolate component configuration (the default) its publishes are refused; a deployment that sets
    ``interpolateComponentConfiguration: true`` on the nucleus lets them through."""
    app = {"com.loupe.inference": {"componentVersion": "1.0.0"}}
    device.apply({"deploymentId": "d1", "components": app})
    assert device.control.reports[-1][1] == "SUCCEEDED", device.control.reports
    refused = published(device)
    assert refused["published"] is False and "UnauthorizedError" in refused["error"], refused
    assert device.mqtt.stats()["depth"] == 0

    nucleus = {
        "componentVersion": "2.12.6",
        "configurationUpdate": {"merge": json.dumps({"interpolateComponentConfiguration": True})},
    }
    app2 = {"com.loupe.inference": {"componentVersion": "1.1.0"}}  # a new version: the component restarts
    device.apply({"deploymentId": "d2", "components": {**app2, "aws.greengrass.Nucleus": nucleus}})
    assert device.control.reports[-1][1] == "SUCCEEDED", device.control.reports
    assert published(device) == {"state": "RUNNING", "published": True}
    assert device.mqtt.stats()["depth"] == 1
    # a later deployment that does not name the nucleus leaves its configuration (and the interpolation) alone
    device.apply({"deploymentId": "d3", "components": {"com.loupe.inference": {"componentVersion": "1.0.0"}}})
    assert device.control.reports[-1][1] == "SUCCEEDED", device.control.reports
    assert device.nucleus["config"]["interpolateComponentConfiguration"] is True
    assert published(device) == {"state": "RUNNING", "published": True}
