"""The labeling app's table for unit tests (its schema read from template.yaml, so a test cannot drift from the
deployed table), a recording Step Functions client, and answers in the route's body shape."""

from __future__ import annotations

import functools
import json
import uuid
from pathlib import Path
from typing import Any

from loupe.labeling.task_store import TaskStore

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@functools.cache
def table_properties() -> dict[str, Any]:
    from loupe_local.template import load_yaml

    props = dict(load_yaml(TEMPLATE)["Resources"]["LabelingTasksTable"]["Properties"])
    return {k: props[k] for k in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")}


def make_store(dynamodb: Any, name: str = "labeling-tasks") -> TaskStore:
    """A TaskStore over a new table of the template's schema in ``dynamodb`` (a boto3 resource, e.g. under moto)."""
    table = dynamodb.create_table(TableName=name, **table_properties())
    table.wait_until_exists()
    return TaskStore(table)


class RecordingSfn:
    """SendTaskSuccess/SendTaskFailure as calls to look at."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def send_task_success(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("success", kwargs))
        return {}

    def send_task_failure(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("failure", kwargs))
        return {}

    def start_execution(self, **kwargs: Any) -> Any:
        raise AssertionError("not used")

    def describe_execution(self, **kwargs: Any) -> Any:
        raise AssertionError("not used")


def box(left: float, top: float, width: float, height: float, label: str = "scratch") -> dict[str, Any]:
    return {"label": label, "left": left, "top": top, "width": width, "height": height}


def app_labeling_machine(
    sfn: Any, runtime: Any, labelers: int, wait_seconds: int | None = None, verify: bool = False
) -> str:
    """A copy of the deployed labeling state machine with the labeling app's options (the template's defaults but
    for ``labelers``, and ``verify``: EnableVerification=true): the session's stack is deployed with
    LabelingService=GroundTruth. ``wait_seconds`` shortens the run's wait (a time scale)."""
    deployed = sfn.describe_state_machine(stateMachineArn=runtime.arn("LabelingStateMachine"))
    definition = json.loads(deployed["definition"])
    params = runtime.parameter_values
    definition["States"]["Configure"]["Result"] = {
        "verify": "true" if verify else "false",
        "service": "Loupe",
        "labelers_per_image": str(labelers),
        "task_lifetime_seconds": str(params["LabelingTaskLifetimeSeconds"]),
        "decline_limit": str(params["LabelingDeclineLimit"]),
    }
    if wait_seconds is not None:
        selector = definition["States"]["WriteManifest"]["ResultSelector"]
        assert selector.pop("wait_seconds.$") == "$.Payload.wait_seconds"
        selector["wait_seconds"] = wait_seconds
    return str(
        sfn.create_state_machine(
            name=f"labeling-app-{labelers}{'-verify' if verify else ''}-{uuid.uuid4().hex[:6]}",
            definition=json.dumps(definition),
            roleArn=deployed["roleArn"],
        )["stateMachineArn"]
    )
