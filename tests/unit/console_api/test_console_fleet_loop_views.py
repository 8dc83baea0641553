"""The Fleet and Loop pages' domain (``loupe.console_api.fleet`` / ``loop``) on moto: what a device wrote is
presigned only when it is an image file of that device's own prefix; another device's frames and objects beside
the frames never are; a labeling run is shown without its task token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from moto import mock_aws

from loupe.console_api import fleet, loop
from loupe.labeling.task_store import TaskStore, job_key
from loupe.ledger import Ledger

RAW = "raw-bucket"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=RAW)
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        ledger = dynamodb.create_table(
            TableName="ledger",
            KeySchema=[{"AttributeName": "sha256", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "sha256", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        tasks = dynamodb.create_table(
            TableName="tasks",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield {"s3": s3, "ledger": Ledger(ledger), "tasks": TaskStore(tasks)}


def test_only_the_devices_own_image_files_are_presigned(aws: dict[str, Any]) -> None:
    s3 = aws["s3"]
    thing = "loupe-device-views-1"
    for key in (
        f"raw/feedback/{thing}/f1.jpg",
        f"raw/feedback/{thing}/notes.html",  # not an image file: never presigned for the page
        f"raw/feedback/{thing}/deeper/f2.png",  # not a frame of this prefix
        "raw/feedback/loupe-device-views-2/f3.jpg",  # another device's
    ):
        s3.put_object(Bucket=RAW, Key=key, Body=b"x", Metadata={"boxes": "[[0,0.5,1,1,5,5]]"})
    frames = fleet.device_frames(s3, RAW, thing)
    assert [f["key"] for f in frames] == [f"raw/feedback/{thing}/f1.jpg"]
    assert frames[0]["frame_id"] == "f1" and frames[0]["boxes"][0]["xyxy"] == [1.0, 1.0, 5.0, 5.0]
    assert urlsplit(frames[0]["image_url"]).path.endswith(f"/raw/feedback/{thing}/f1.jpg")  # virtual-hosted
    # a thing name that is not one (a prefix trick) lists nothing
    assert fleet.device_frames(s3, RAW, "../raw") == []


def test_a_labeling_run_is_shown_with_its_progress_never_its_token(aws: dict[str, Any]) -> None:
    ledger, tasks = aws["ledger"], aws["tasks"]
    ledger.put_job("job-app", claim_id="c1", purpose="labeling", service="loupe", images=["a" * 64])
    ledger.put_job("job-gt", claim_id="c2", purpose="verification", task_token="gt-secret-token")
    tasks.table.put_item(
        Item={**job_key("job-app"), "task_token": "app-secret-token", "status": "open", "total": 3, "done": 1}
    )
    runs = {r["name"]: r for r in loop.labeling_runs(ledger, tasks)}
    assert runs["job-app"] | {"created": ""} == {
        "name": "job-app",
        "purpose": "labeling",
        "service": "loupe",
        "created": "",
        "status": "open",
        "total": 3,
        "done": 1,
        "labelers_per_image": None,
        "expires_at": None,
    }
    assert runs["job-gt"]["service"] == "groundtruth" and "status" not in runs["job-gt"]
    assert "secret" not in repr(runs)
