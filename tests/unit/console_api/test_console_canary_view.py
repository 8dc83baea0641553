"""The Fleet page shows the running canary, and when it is held for labels, why and each model's labeled precision;
a canary that ended is not shown as running."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from support.stack_tables import template_table_properties

from loupe.console_api import fleet
from loupe.deployment.store import DeploymentsStore


@pytest.fixture
def store() -> Iterator[DeploymentsStore]:
    with mock_aws():
        table = boto3.resource("dynamodb", region_name="us-east-1").create_table(
            TableName="deployments", **template_table_properties("DeploymentsTable")
        )
        yield DeploymentsStore(table)


def test_a_held_canary_is_shown_with_its_labeled_precision(store: DeploymentsStore) -> None:
    assert fleet.running_canary(store, "fleet") is None and fleet.running_canary(None, "fleet") is None
    store.put_canary(
        "fleet",
        {"status": "RUNNING", "run_id": "run-3", "challenger_version": "m2", "champion_version": "m1", "cohort": ["a"]},
    )
    assert fleet.running_canary(store, "fleet") == {
        "status": "RUNNING",
        "challenger_version": "m2",
        "champion_version": "m1",
        "cohort": ["a"],
    }
    labels = {"canary": {"frames": 4, "predicted": 5, "true_positives": 4, "precision": 0.8}, "champion": {}}
    assert store.set_canary_hold("fleet", "run-3", {"since": "t0", "reasons": ["ng_rate ..."], "labels": labels})
    assert not store.set_canary_hold("fleet", "run-other", {"since": "t1"})  # another run's hold is not written
    shown = fleet.running_canary(store, "fleet") or {}
    assert shown["hold"]["since"] == "t0" and shown["hold"]["labels"]["canary"]["true_positives"] == 4
    assert shown["hold"]["labels"]["canary"]["precision"] == "0.8"  # DynamoDB holds no floats: kept as text
    store.put_canary("fleet", {"status": "PROMOTED", "run_id": "run-3"})
    assert fleet.running_canary(store, "fleet") is None
