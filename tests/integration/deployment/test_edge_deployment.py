"""Edge deployment end to end in the local AWS: the real ASL in moto's engine, the real handlers, the Greengrass
stand-in, two local core devices running the real ``edge_component/`` inference component, MQTT on loopback.

The tests form one scenario (module order matters: each starts from the fleet state the previous one left):
empty thing group → another team deploys its component to the group → approve A (aws CLI) → B approved, its event
delivered three times → tampered C refused → a card rewritten after registration to carry a shell
payload refused → crashing D refused by the model's install check and rolled back →
rejecting B goes back to A → the other team's component still runs with its configuration → a late approval of an
older package is superseded → two approvals at once roll out one at a time → a device that does not report the new
model is "deployed, not serving" → a down device times out while the others take E.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.archives import tar_gz
from support.deploy_packages import register_package, sha
from support.health_fleet import deployment_timeout
from support.waiting import wait_until

from loupe_local.devices.fleet import device_name_prefix
from loupe_local.local_auth import mqtt_login

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
DEPLOYMENT_TIMEOUT = 60  # s: DeploymentTimeoutSeconds here (status checks from 2 s on, at most every 3 s)
# the two tests that wait for a device that never answers end sooner; the healthy devices beside it must still
# finish within it, so not much shorter: on 2 busy cores a rollout once missed 25 s
SHORT_DEPLOYMENT_TIMEOUT = 40
EXEC_WAIT = 120


# ------------------------------------------------------------------ helpers
def executions(rt: Any) -> dict[str, dict[str, Any]]:
    sfn = rt.client("stepfunctions")
    out = sfn.list_executions(stateMachineArn=rt.arn("EdgeDeploymentStateMachine"))["executions"]
    return {e["executionArn"]: e for e in out}


def wait_new_execution(rt: Any, before: dict[str, Any], timeout: float = EXEC_WAIT) -> dict[str, Any]:
    """The one execution started since ``before``, once it has finished."""
    sfn = rt.client("stepfunctions")

    def finished() -> list[dict[str, Any]] | None:
        new = [e for arn, e in executions(rt).items() if arn not in before]
        return new if new and all(e["status"] != "RUNNING" for e in new) else None

    new = wait_until(finished, timeout, interval=0.5)
    assert new, f"no finished execution within {timeout}s: {executions(rt)}"
    assert len(new) == 1, f"expected one new execution, got {[e['name'] for e in new]}"
    return sfn.describe_execution(executionArn=new[0]["executionArn"])


def run_record(rt: Any, package_arn: str, run_id: str) -> dict[str, Any]:
    table = _table(rt)
    item = table.get_item(Key={"pk": f"PACKAGE#{package_arn}", "sk": f"RUN#{run_id}"}).get("Item")
    assert item, f"no deployments-table record for {package_arn} run {run_id}"
    return item


def _table(rt: Any) -> Any:
    return rt.resource("dynamodb").Table(rt.physical("DeploymentsTable"))


def aws_cli(rt: Any, *args: str) -> str:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": rt.endpoint,
        **rt.credentials.env(),
    }
    env["AWS_DEFAULT_REGION"] = rt.region
    aws = Path(sys.executable).parent / "aws"
    out = subprocess.run([str(aws), *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"aws {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def gg_deployments(rt: Any) -> list[dict[str, Any]]:
    gg = rt.client("greengrassv2")
    return gg.list_deployments(historyFilter="ALL")["deployments"]


class MqttSink:
    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-deploy-{uuid.uuid4().hex[:6]}")
        mqtt_login(self.client)  # the run's credential, which the local AWS put in this process' environment
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p=None: (c.subscribe("loupe/+/inference", qos=1), connected.set())
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert connected.wait(10), "cannot subscribe to the local MQTT broker"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.cond:
            self.messages.append((msg.topic, json.loads(msg.payload)))
            self.cond.notify_all()

    def wait_for(self, thing: str, frame_name: str, timeout: float = 30.0) -> dict[str, Any]:
        def result() -> dict[str, Any] | None:
            with self.cond:
                topic = f"loupe/{thing}/inference"
                return next((m for t, m in self.messages if t == topic and m.get("source") == frame_name), None)

        msg = wait_until(result, timeout, interval=0.1)
        if msg is None:
            raise AssertionError(f"no inference result from {thing} for {frame_name} within {timeout}s")
        return msg

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def png_bytes(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def serving(fleet: Any, sink: MqttSink, thing: str) -> str:
    """Feed one frame to the device's inference component and return the model version its result names."""
    from loupe_local.devices.fleet import device_root

    frames = device_root(fleet.state_dir, thing) / "frames"
    name = f"frame-{uuid.uuid4().hex[:8]}.png"
    tmp = frames.parent / f".{name}"
    tmp.write_bytes(png_bytes(len(sink.messages)))
    tmp.replace(frames / name)
    return sink.wait_for(thing, name)["model_version"]


def notifications(rt: Any, queue_url: str) -> list[dict[str, Any]]:
    sqs = rt.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not got:
            return out
        for m in got:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def approve(rt: Any, arn: str) -> None:
    rt.client("sagemaker").update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")


def package_events_fn(rt: Any) -> Any:
    return rt.invoker.find(rt.physical("ModelPackageEventsFunction"))


def package_events_handled(rt: Any, since: int, count: int) -> None:
    """Returns once ``count`` deliveries to the package-events handler after its ``since``-th have run to their end.

    The sentinel: the local runtime runs one invocation at a time, so a synchronous invoke with another group's
    package event (which the handler ignores) returns only after every invocation that started before it."""
    fn = package_events_fn(rt)
    assert wait_until(lambda: fn.invocations >= since + count), f"{count} package events were not delivered"
    foreign = json.loads((REPO / "events" / "aws_model_package_state_change.json").read_text())
    rt.invoke("ModelPackageEventsFunction", foreign)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def rt(local_aws: Any) -> Iterator[Any]:
    """The session's local AWS with this module's DeploymentTimeoutSeconds (a stack parameter change)."""
    with deployment_timeout(local_aws, DEPLOYMENT_TIMEOUT):
        yield local_aws


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    return {}


@pytest.fixture(scope="module")
def notify_queue(rt: Any) -> str:
    sqs = rt.client("sqs")
    url = sqs.create_queue(QueueName=f"deploy-notes-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rt.client("sns").subscribe(TopicArn=rt.physical("NotifyTopic"), Protocol="sqs", Endpoint=queue_arn)
    return url


@pytest.fixture(scope="module")
def fleet(rt: Any, scenario: dict[str, Any]) -> Iterator[Any]:
    from loupe_local.devices.fleet import DeviceFleet

    # named as the stack's devices must be (CoreDeviceThingNamePrefix: the devices' IoT policy and the console's
    # grant on installed components admit only those names; the session's other tests list this group too)
    prefix = f"{device_name_prefix(rt.parameter_values)}-deploy"
    fleet = DeviceFleet.from_runtime(rt, poll_seconds=0.5, settle_seconds=1.5, ack_seconds=8.0, prefix=prefix)
    scenario["inference"] = fleet.publish_components(rt.physical("ArtifactBucket"))
    names = fleet.start(2)
    try:
        fleet.wait_registered(names)
        scenario["devices"] = names
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def sink(rt: Any) -> Iterator[MqttSink]:
    assert rt.mqtt, "the local AWS runs without an MQTT broker"
    s = MqttSink(rt.mqtt["host"], int(rt.mqtt["port"]))
    yield s
    s.close()


# ------------------------------------------------------------------ the scenario
def test_empty_thing_group_ends_with_a_clear_status(rt: Any, notify_queue: str) -> None:
    iot = rt.client("iot")
    group = rt.physical("FleetThingGroup")
    members = iot.list_things_in_thing_group(thingGroupName=group)["things"]
    for thing in members:
        iot.remove_thing_from_thing_group(thingGroupName=group, thingName=thing)
    try:
        pkg = register_package(rt)
        before, deployments_before = executions(rt), len(gg_deployments(rt))
        invoked, errors = package_events_fn(rt).invocations, package_events_fn(rt).errors
        approve(rt, pkg["arn"])
        done = wait_new_execution(rt, before)
    finally:
        for thing in members:
            iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    assert done["status"] == "SUCCEEDED"
    out = json.loads(done["output"])
    assert out["status"] == "nothing_to_deploy"
    assert "has no devices" in out["reason"]
    assert run_record(rt, pkg["arn"], done["name"])["outcome"] == "NOTHING_TO_DEPLOY"
    assert len(gg_deployments(rt)) == deployments_before
    package_events_handled(rt, invoked, 1)  # and it succeeded: no delivery retry, nothing else starts
    assert package_events_fn(rt).errors == errors
    assert [a for a in executions(rt) if a not in before] == [done["executionArn"]]
    notes = notifications(rt, notify_queue)
    assert any("NOTHING_TO_DEPLOY" in n.get("Subject", "") for n in notes)


# ------------------------------------------------------------------ another team's component on the same group
FOREIGN = "com.acme.sensor"
FOREIGN_CONFIG = {"greeting": "hello from acme", "rate": 7}


def foreign_state(fleet: Any, thing: str) -> dict[str, Any]:
    """(pid, the configuration its Run script saw) of the other team's component on ``thing``, or {}."""
    from loupe_local.devices.fleet import device_root

    root = device_root(fleet.state_dir, thing)
    comp = ((json.loads((root / "device.json").read_text()).get("components")) or {}).get(FOREIGN) or {}
    seen = root / "work" / FOREIGN / "seen.json"
    if comp.get("state") != "RUNNING" or not comp.get("pid") or not seen.is_file():
        return {}
    return {"pid": comp["pid"], "seen": json.loads(seen.read_text())}


def test_another_team_deploys_its_component_to_the_group_first(rt: Any, fleet: Any, scenario: dict[str, Any]) -> None:
    from loupe.greengrass import create_component

    gg = rt.client("greengrassv2")
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": FOREIGN,
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": {"DefaultConfiguration": {"greeting": "default", "rate": 1}},
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Lifecycle": {
                    "Run": 'printf \'{"greeting": "%s", "rate": %s}\' \'{configuration:/greeting}\' '
                    "'{configuration:/rate}' > seen.json && exec sleep 86400"
                },
            }
        ],
    }
    create_component(gg, recipe)
    group = rt.client("iot").describe_thing_group(thingGroupName=rt.physical("FleetThingGroup"))
    gg.create_deployment(
        targetArn=group["thingGroupArn"],
        deploymentName="acme sensors",
        components={
            FOREIGN: {"componentVersion": "1.0.0", "configurationUpdate": {"merge": json.dumps(FOREIGN_CONFIG)}}
        },
    )
    for thing in scenario["devices"]:
        state = wait_until(lambda t=thing: foreign_state(fleet, t), timeout=60)
        assert state, f"{FOREIGN} does not run on {thing}: {fleet.status([thing])}"
        assert state["seen"] == FOREIGN_CONFIG
    scenario["foreign"] = {t: foreign_state(fleet, t) for t in scenario["devices"]}


def feedback_settings(fleet: Any, thing: str) -> dict[str, Any]:
    """The inference component's feedback settings the device runs with (its current deployment's configuration)."""
    from loupe_local.devices.fleet import device_root

    current = json.loads((device_root(fleet.state_dir, thing) / "current.json").read_text())
    return current["components"]["com.loupe.inference"]["config"]["settings"]["feedback"]


BAND = {"bandLow": 0.07, "bandHigh": 0.33, "criterion": "top", "share": 0.3, "frames": 40, "method": "calibrated"}


def test_approving_with_the_aws_cli_deploys_to_both_devices(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any]
) -> None:
    """Package A's card carries its uncertainty band: the devices run A with that band."""
    pkg = register_package(rt, model_version=f"A-{uuid.uuid4().hex[:6]}", card_extra={"uncertainty_band": BAND})
    before = executions(rt)
    aws_cli(
        rt,
        "sagemaker",
        "update-model-package",
        "--model-package-arn",
        pkg["arn"],
        "--model-approval-status",
        "Approved",
    )
    done = wait_new_execution(rt, before)
    assert done["status"] == "SUCCEEDED", run_record(rt, pkg["arn"], done["name"])
    out = json.loads(done["output"])
    assert out["summary"]["outcome"] == "COMPLETED"
    assert out["model"]["name"] == "com.loupe.model"
    record = run_record(rt, pkg["arn"], done["name"])
    assert {t: d["status"] for t, d in record["devices"].items()} == {t: "COMPLETED" for t in scenario["devices"]}
    for thing in scenario["devices"]:
        assert serving(fleet, sink, thing) == pkg["model_version"]
        feedback = feedback_settings(fleet, thing)
        assert (feedback["bandLow"], feedback["bandHigh"], feedback["criterion"]) == (0.07, 0.33, "top")
        assert feedback["bucket"] == rt.physical("RawBucket")
    scenario["A"] = pkg


def test_the_same_approval_event_three_times_makes_one_deployment(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any]
) -> None:
    observer = next(s for s in rt.standins if s.name == "model-registry-events")
    pkg = register_package(rt, model_version=f"B-{uuid.uuid4().hex[:6]}")
    before, deployments_before = executions(rt), len(gg_deployments(rt))
    invoked = package_events_fn(rt).invocations
    approve(rt, pkg["arn"])
    event = next(e for e in reversed(observer.emitted) if e["arn"] == pkg["arn"])
    for _ in range(2):  # EventBridge delivers at least once: the same event again, twice
        rt.emit_event("aws.sagemaker", "SageMaker Model Package State Change", event["detail"], [pkg["arn"]])
    done = wait_new_execution(rt, before)
    package_events_handled(rt, invoked, 3)
    assert len([a for a in executions(rt) if a not in before]) == 1
    assert done["status"] == "SUCCEEDED", done
    assert len(gg_deployments(rt)) == deployments_before + 1
    fn = rt.invoker.find("ModelPackageEventsFunction")
    assert fn is not None and fn.errors == 0
    for thing in scenario["devices"]:
        assert serving(fleet, sink, thing) == pkg["model_version"]
        # B's card has no band: A's does not linger, the recipe's default comes back
        feedback = feedback_settings(fleet, thing)
        assert (feedback["bandLow"], feedback["bandHigh"], feedback["criterion"]) == (0.25, 0.6, "any")
    scenario["B"] = pkg


def test_a_tampered_artifact_is_refused_with_an_alert(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any], notify_queue: str
) -> None:
    notifications(rt, notify_queue)
    pkg = register_package(rt, model_version=f"C-{uuid.uuid4().hex[:6]}")
    forged = tar_gz({"model.onnx": b"\x08\x07" + os.urandom(64), "model_card.json": b'{"version": "forged"}'})
    rt.client("s3").put_object(Bucket=pkg["bucket"], Key=pkg["key"], Body=forged)
    before, deployments_before = executions(rt), len(gg_deployments(rt))
    approve(rt, pkg["arn"])
    done = wait_new_execution(rt, before)
    assert done["status"] == "FAILED"
    assert done.get("error") == "DeploymentRefused"
    record = run_record(rt, pkg["arn"], done["name"])
    assert record["outcome"] == "REFUSED"
    assert "ArtifactDigestMismatch" in record["reason"] and sha(forged) in record["reason"]
    assert len(gg_deployments(rt)) == deployments_before
    alerts = [n for n in notifications(rt, notify_queue) if "REFUSED" in n.get("Subject", "")]
    assert alerts and "does not match the registered" in alerts[-1]["Message"]
    for thing in scenario["devices"]:
        assert serving(fleet, sink, thing) == scenario["B"]["model_version"]


def model_versions(rt: Any) -> list[str]:
    from loupe.greengrass import MODEL_COMPONENT, component_versions

    return component_versions(rt.client("greengrassv2"), MODEL_COMPONENT)


def test_a_card_rewritten_after_registration_to_carry_a_shell_payload_is_refused(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any], notify_queue: str, tmp_path: Path
) -> None:
    """The package is swapped for one whose model card's version is a shell command, and the registered digests are
    updated to match it (UpdateModelPackage): every digest checks out, the card is refused before any component is
    built, with an alert; nothing reaches the devices and the payload runs nowhere."""
    from support.deploy_packages import tiny_detector

    notifications(rt, notify_queue)
    pkg = register_package(rt, model_version=f"P-{uuid.uuid4().hex[:6]}")
    pwned = tmp_path / "pwned"
    model = tiny_detector()
    card = json.dumps({"version": f"1'; touch {pwned}; echo '", "class_map": {"0": "scratch"}, "imgsz": 32}).encode()
    forged = tar_gz({"model.onnx": model, "model_card.json": card})
    rt.client("s3").put_object(Bucket=pkg["bucket"], Key=pkg["key"], Body=forged)
    digests = {"package_sha256": sha(forged), "model_sha256": sha(model), "model_card_sha256": sha(card)}
    rt.client("sagemaker").update_model_package(ModelPackageArn=pkg["arn"], CustomerMetadataProperties=digests)
    models_before = model_versions(rt)
    before, deployments_before = executions(rt), len(gg_deployments(rt))
    approve(rt, pkg["arn"])
    done = wait_new_execution(rt, before)
    assert done["status"] == "FAILED" and done.get("error") == "DeploymentRefused"
    record = run_record(rt, pkg["arn"], done["name"])
    assert record["outcome"] == "REFUSED"
    assert "PackageInvalid" in record["reason"] and "model card version" in record["reason"]
    assert len(gg_deployments(rt)) == deployments_before
    assert model_versions(rt) == models_before  # no com.loupe.model version was built from it
    alerts = [n for n in notifications(rt, notify_queue) if "REFUSED" in n.get("Subject", "")]
    assert alerts and "model card version" in alerts[-1]["Message"]
    for thing in scenario["devices"]:
        assert serving(fleet, sink, thing) == scenario["B"]["model_version"]
    assert not pwned.exists()


def test_a_crashing_model_rolls_back_and_the_old_model_keeps_serving(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any]
) -> None:
    pkg = register_package(rt, onnx_bytes=b"this is not an ONNX graph", model_version=f"D-{uuid.uuid4().hex[:6]}")
    before = executions(rt)
    approve(rt, pkg["arn"])
    done = wait_new_execution(rt, before)
    assert done["status"] == "FAILED"
    assert done.get("error") == "DeploymentIncomplete"
    record = run_record(rt, pkg["arn"], done["name"])
    assert record["outcome"] == "FAILED"
    statuses = {t: d["status"] for t, d in record["devices"].items()}
    assert set(statuses.values()) <= {"FAILED", "CANCELED"} and "FAILED" in statuses.values(), statuses
    failed = [d for d in record["devices"].values() if d["status"] == "FAILED"]
    # the model's own Install step loads it once (check_model.py): the pointer never moves to a model that fails
    assert all("com.loupe.model" in d["reason"] and "Install exited" in d["reason"] for d in failed), failed
    assert all("rolled back" in d["reason"] for d in failed), failed
    for thing in scenario["devices"]:
        from loupe_local.devices.fleet import device_root

        log = (device_root(fleet.state_dir, thing) / "logs" / "com.loupe.model.log").read_text()
        assert "com.loupe.model check failed" in log and "does not load" in log
    for thing in scenario["devices"]:
        assert serving(fleet, sink, thing) == scenario["B"]["model_version"]
    scenario["D"] = pkg


def test_rejecting_a_package_nobody_runs_changes_nothing(rt: Any, fleet: Any, scenario: dict[str, Any]) -> None:
    before, invoked = executions(rt), package_events_fn(rt).invocations
    rt.client("sagemaker").update_model_package(ModelPackageArn=scenario["D"]["arn"], ModelApprovalStatus="Rejected")
    package_events_handled(rt, invoked, 1)
    assert [a for a in executions(rt) if a not in before] == []


def test_rejecting_the_deployed_package_redeploys_the_previous_one(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any]
) -> None:
    before = executions(rt)
    aws_cli(
        rt,
        "sagemaker",
        "update-model-package",
        "--model-package-arn",
        scenario["B"]["arn"],
        "--model-approval-status",
        "Rejected",
    )
    done = wait_new_execution(rt, before)
    assert done["status"] == "SUCCEEDED", run_record(rt, scenario["A"]["arn"], done["name"])
    out = json.loads(done["output"])
    assert out["mode"] == "rollback"
    assert out["package"]["arn"] == scenario["A"]["arn"]
    for thing in scenario["devices"]:
        assert serving(fleet, sink, thing) == scenario["A"]["model_version"]


def test_the_other_team_s_component_survived_two_approvals_and_a_rejection(
    rt: Any, fleet: Any, scenario: dict[str, Any]
) -> None:
    for thing in scenario["devices"]:
        assert foreign_state(fleet, thing) == scenario["foreign"][thing]  # same process, same configuration
    gg = rt.client("greengrassv2")
    group = rt.client("iot").describe_thing_group(thingGroupName=rt.physical("FleetThingGroup"))
    latest = gg.list_deployments(targetArn=group["thingGroupArn"], historyFilter="LATEST_ONLY")["deployments"]
    assert len(latest) == 1
    components = gg.get_deployment(deploymentId=latest[0]["deploymentId"])["components"]
    # plus the nucleus at the version the devices report, set to interpolate the inference component's IPC
    # policy (and, once a deployment names a nucleus version, the disk spooler)
    nucleus_provided = {"aws.greengrass.Nucleus", "aws.greengrass.DiskSpooler"}
    assert set(components) - nucleus_provided == {FOREIGN, "com.loupe.model", "com.loupe.inference"}
    nucleus_merge = json.loads(components["aws.greengrass.Nucleus"]["configurationUpdate"]["merge"])
    assert nucleus_merge["interpolateComponentConfiguration"] is True
    assert json.loads(components[FOREIGN]["configurationUpdate"]["merge"]) == FOREIGN_CONFIG


def loupe_runs(rt: Any, before: dict[str, Any]) -> list[dict[str, Any]]:
    """Executions started since ``before``, once all have finished (oldest first)."""
    sfn = rt.client("stepfunctions")

    def finished() -> list[dict[str, Any]]:
        new = [e for arn, e in executions(rt).items() if arn not in before]
        return new if new and all(e["status"] != "RUNNING" for e in new) else []

    new = wait_until(finished, timeout=EXEC_WAIT + DEPLOYMENT_TIMEOUT, interval=0.5)
    assert new, f"executions did not finish: {executions(rt)}"
    return [sfn.describe_execution(executionArn=e["executionArn"]) for e in sorted(new, key=lambda e: e["startDate"])]


def test_a_late_approval_of_an_older_package_does_not_replace_the_newer_one(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any], notify_queue: str
) -> None:
    older = register_package(rt, model_version=f"F-{uuid.uuid4().hex[:6]}")
    newer = register_package(rt, model_version=f"G-{uuid.uuid4().hex[:6]}")
    before = executions(rt)
    approve(rt, newer["arn"])
    assert wait_new_execution(rt, before)["status"] == "SUCCEEDED"
    notifications(rt, notify_queue)
    before, deployments_before = executions(rt), len(gg_deployments(rt))
    approve(rt, older["arn"])  # its event arrives after the newer package's
    done = wait_new_execution(rt, before)
    assert done["status"] == "SUCCEEDED", done
    record = run_record(rt, older["arn"], done["name"])
    assert record["outcome"] == "SUPERSEDED" and "newer Approved package" in record["reason"]
    assert len(gg_deployments(rt)) == deployments_before
    assert any("SUPERSEDED" in n.get("Subject", "") for n in notifications(rt, notify_queue))
    for thing in scenario["devices"]:
        assert serving(fleet, sink, thing) == newer["model_version"]


def test_two_approvals_at_once_roll_out_one_at_a_time_and_the_newest_wins(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any]
) -> None:
    first = register_package(rt, model_version=f"H-{uuid.uuid4().hex[:6]}")
    second = register_package(rt, model_version=f"I-{uuid.uuid4().hex[:6]}")
    before, deployments_before = executions(rt), {d["deploymentId"] for d in gg_deployments(rt)}
    approve(rt, first["arn"])
    approve(rt, second["arn"])
    runs = loupe_runs(rt, before)
    assert len(runs) == 2
    by_package = {json.loads(r["input"])["package_arn"]: r for r in runs}
    second_record = run_record(rt, second["arn"], by_package[second["arn"]]["name"])
    first_record = run_record(rt, first["arn"], by_package[first["arn"]]["name"])
    assert second_record["outcome"] == "COMPLETED"
    assert first_record["outcome"] in ("COMPLETED", "SUPERSEDED"), first_record
    sfn = rt.client("stepfunctions")
    entered = [
        {
            e["stateEnteredEventDetails"]["name"]
            for e in sfn.get_execution_history(executionArn=r["executionArn"], maxResults=1000)["events"]
            if "stateEnteredEventDetails" in e
        }
        for r in runs
    ]
    first_states = entered[[json.loads(r["input"])["package_arn"] for r in runs].index(first["arn"])]
    if first_record["outcome"] == "SUPERSEDED":  # decided under the lock, before any CreateDeployment
        assert "LockHeld" in first_states and "CreateDeployment" not in first_states, first_states
    gg = rt.client("greengrassv2")
    created = {
        d["deploymentId"]: gg.get_deployment(deploymentId=d["deploymentId"])["creationTimestamp"].timestamp()
        for d in gg_deployments(rt)
        if d["deploymentId"] not in deployments_before
    }
    assert len(created) == (2 if first_record["outcome"] == "COMPLETED" else 1)
    if first_record["outcome"] == "COMPLETED":  # it held the group: the second was created after it finished
        assert created[second_record["deployment_id"]] >= float(first_record["finished_epoch"])
    for thing in scenario["devices"]:
        assert serving(fleet, sink, thing) == second["model_version"]


def test_a_device_that_does_not_serve_the_new_model_is_deployed_not_serving(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any], notify_queue: str, tmp_path: Path
) -> None:
    from loupe_local.devices.fleet import device_root

    mute = f"loupe-device-mute-{uuid.uuid4().hex[:4]}"
    overlay = tmp_path / "mute.json"  # its health goes to a topic no rule reads: it never says what it serves
    overlay.write_text(json.dumps({"com.loupe.inference": {"settings": {"topics": {"health": "acme/{thing}/h"}}}}))
    fleet.start_device(mute, ["--overlay", str(overlay)])
    group = rt.physical("FleetThingGroup")
    try:
        fleet.wait_registered([mute])
        wait_until(lambda: foreign_state(fleet, mute), timeout=60)  # it took the group's current deployment
        notifications(rt, notify_queue)
        pkg = register_package(rt, model_version=f"J-{uuid.uuid4().hex[:6]}")
        before = executions(rt)
        with deployment_timeout(rt, SHORT_DEPLOYMENT_TIMEOUT):
            approve(rt, pkg["arn"])
            done = wait_new_execution(rt, before, timeout=SHORT_DEPLOYMENT_TIMEOUT + EXEC_WAIT)
    finally:
        fleet.stop_device(mute)
        rt.client("iot").remove_thing_from_thing_group(thingGroupName=group, thingName=mute)
    assert done["status"] == "FAILED" and done.get("error") == "DeploymentIncomplete"
    record = run_record(rt, pkg["arn"], done["name"])
    assert record["outcome"] == "DEPLOYED_NOT_SERVING"
    assert record["devices"][mute]["status"] == "NOT_SERVING"
    assert "deployed, not serving" in record["devices"][mute]["reason"]
    pointer = json.loads((device_root(fleet.state_dir, mute) / "work/com.loupe.model/current.json").read_text())
    assert pointer["version"] == pkg["model_version"]  # Greengrass did install it there
    for thing in scenario["devices"]:
        assert record["devices"][thing]["status"] == "COMPLETED"
    notes = [n for n in notifications(rt, notify_queue) if "DEPLOYED_NOT_SERVING" in n.get("Subject", "")]
    assert notes and "deployed, not serving" in notes[-1]["Message"]


def test_a_down_device_times_out_while_the_others_complete(
    rt: Any, fleet: Any, sink: MqttSink, scenario: dict[str, Any]
) -> None:
    iot = rt.client("iot")
    group = rt.physical("FleetThingGroup")
    ghost = f"{device_name_prefix(rt.parameter_values)}-deploy-down-{uuid.uuid4().hex[:4]}"
    iot.create_thing(thingName=ghost)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=ghost)
    try:
        pkg = register_package(rt, training_card=True)  # the pipeline's card: the package version names it
        before = executions(rt)
        with deployment_timeout(rt, SHORT_DEPLOYMENT_TIMEOUT):
            approve(rt, pkg["arn"])
            done = wait_new_execution(rt, before, timeout=SHORT_DEPLOYMENT_TIMEOUT + EXEC_WAIT)
    finally:
        iot.remove_thing_from_thing_group(thingGroupName=group, thingName=ghost)
    assert done["status"] == "FAILED" and done.get("error") == "DeploymentIncomplete"
    record = run_record(rt, pkg["arn"], done["name"])
    assert record["outcome"] == "PARTIAL"
    assert record["devices"][ghost]["status"] == "TIMED_OUT"
    assert "timeout" in record["devices"][ghost]["reason"]
    for thing in scenario["devices"]:
        assert record["devices"][thing]["status"] == "COMPLETED"
        assert serving(fleet, sink, thing) == pkg["model_version"]


def test_no_approved_package_ends_with_a_clear_status(rt: Any) -> None:
    sfn = rt.client("stepfunctions")
    before = executions(rt)
    sfn.start_execution(
        stateMachineArn=rt.arn("EdgeDeploymentStateMachine"),
        name=f"manual-{uuid.uuid4().hex[:8]}",
        input=json.dumps({"package_arn": None, "mode": "rollback", "reason": "no package is Approved"}),
    )
    done = wait_new_execution(rt, before)
    assert done["status"] == "SUCCEEDED"
    out = json.loads(done["output"])
    assert out["status"] == "nothing_to_deploy" and out["summary"]["outcome"] == "NOTHING_TO_DEPLOY"
    assert out["reason"] == "no package is Approved"


def test_loupe_edge_cli_publishes_once_and_shows_the_devices(
    rt: Any, fleet: Any, scenario: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from loupe_local.devices import fleet as devices

    monkeypatch.setenv("LOUPE_STATE_DIR", str(rt.state_dir))
    parser = argparse.ArgumentParser(prog="loupe")
    devices.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["edge", "publish"])
    assert args.func(args) == 0  # edge_component/ may have changed since the fleet fixture published it
    first = capsys.readouterr().out.split()[2]
    assert args.func(args) == 0
    assert f"com.loupe.inference {first} already published" in capsys.readouterr().out
    args = parser.parse_args(["edge", "devices", "--lines", "3"])
    assert args.func(args) == 0
    shown = json.loads(capsys.readouterr().out)["devices"]
    for thing in scenario["devices"]:
        assert shown[thing]["process"] == "running"
        assert shown[thing]["components"]["com.loupe.inference"]["state"] == "RUNNING"
        assert shown[thing]["component_logs"]["com.loupe.inference"]
