"""The canary tests' shared pieces (tests/integration/deployment/test_canary_*.py): the state machine's canary
parameters, cameras that keep frames coming, what a device serves, the notifications a person reads, the champion
deployed the direct way."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from support.deploy_packages import register_package, tiny_detector
from support.health_fleet import finished_run


def configure(rt: Any, canary_percent: int, window_frames: int, deployment_timeout: int, **extra: str) -> None:
    """The parameters in the state machine's Prepare state (as a stack deployed with them would have): the
    deployment timeout, the canary's percent and window (180 s), and any other ``canary_*`` value in ``extra``."""
    sfn = rt.client("stepfunctions")
    arn = rt.arn("EdgeDeploymentStateMachine")
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"])
    definition["States"]["Prepare"]["Parameters"].update(
        {
            "timeout_seconds": str(deployment_timeout),
            "canary_percent": str(canary_percent),
            "canary_window_frames": str(window_frames),
            "canary_timeout_seconds": "180",
            **extra,
        }
    )
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(definition))


class Cameras:
    """Keeps a frame or two waiting in each device's frame folder, as a line's camera does, until stopped."""

    def __init__(self, rt: Any, things: list[str]) -> None:
        from loupe_local.devices.fleet import device_root

        self.folders = [device_root(rt.state_dir, t) / "frames" for t in things]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def _run(self) -> None:
        from PIL import Image

        while not self.stop.is_set():
            for folder in self.folders:
                if len([p for p in folder.glob("*.png")]) < 2:
                    tmp = folder.parent / f".cam-{self.sent}.png"
                    Image.new("RGB", (64, 48), (120, 110, 100)).save(tmp, format="PNG")
                    tmp.replace(folder / f"cam-{self.sent:05d}.png")
                    self.sent += 1
            self.stop.wait(0.2)  # a camera's frame rate, not a wait for a result

    def __enter__(self) -> Cameras:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def serving(rt: Any, thing: str) -> str:
    from loupe_local.devices.fleet import device_root

    current = json.loads((device_root(rt.state_dir, thing) / "current.json").read_text())
    return str(current["components"]["com.loupe.model"]["config"]["modelVersion"])


def groups_of(rt: Any, thing: str) -> set[str]:
    return {g["groupName"] for g in rt.client("iot").list_thing_groups_for_thing(thingName=thing)["thingGroups"]}


def runs_of(rt: Any, package_arn: str) -> list[str]:
    sfn = rt.client("stepfunctions")
    out = []
    for e in sfn.list_executions(stateMachineArn=rt.arn("EdgeDeploymentStateMachine"))["executions"]:
        if (
            json.loads(sfn.describe_execution(executionArn=e["executionArn"]).get("input") or "{}").get("package_arn")
            == package_arn
        ):
            out.append(e["name"])
    return out


def notify_queue(rt: Any, name: str) -> str:
    """An SQS queue subscribed to the stack's notification topic: what a person would read."""
    sqs = rt.client("sqs")
    url = sqs.create_queue(QueueName=f"{name}-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rt.client("sns").subscribe(TopicArn=rt.physical("NotifyTopic"), Protocol="sqs", Endpoint=queue_arn)
    return url


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


def deploy_champion(rt: Any, tag: str, deployment_timeout: int, window_frames: int) -> dict[str, Any]:
    """C (a detector that finds nothing) approved and deployed on the whole fleet the direct way (CanaryPercent 0);
    the Prepare state is left with CanaryPercent 0: the caller configures its canary next."""
    sm = rt.client("sagemaker")
    configure(rt, 0, window_frames, deployment_timeout)
    prod = register_package(rt, onnx_bytes=tiny_detector(anchors=8), model_version=f"champ-{tag}")
    sm.update_model_package(ModelPackageArn=prod["arn"], ModelApprovalStatus="Approved")
    run = finished_run(rt, prod["arn"], "approved", timeout=240)
    assert run["status"] == "SUCCEEDED", run.get("output") or run.get("cause")
    return prod
