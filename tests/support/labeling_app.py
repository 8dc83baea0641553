"""The labeling app's table for unit tests (its schema read from template.yaml, so a test cannot drift from the
deployed table), a recording Step Functions client, and answers in the route's body shape."""

from __future__ import annotations

import functools
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
