"""GET /fleet and GET /loop of the console API on the local stack: what a deployed stack records (the fleet's thing
group, health records, deployment history, the frames devices uploaded, the ledger, dataset versions, executions,
labeling jobs, alarms), read by the ConsoleApiFunction under its own role (IAM audited by the session)."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from support.console_users import api, signed_in
from support.health_fleet import thing_in_fleet
from support.image_samples import jpeg
from support.stack_tables import stack_table
from support.waiting import wait_until

from loupe.deployment.store import DeploymentsStore
from loupe.ledger import Ledger
from loupe_local.console.signin import sign_in
from loupe_local.standins.httpapi.service import HttpApis


@pytest.fixture(scope="module")
def base(local_aws: Any) -> str:
    return next(s for s in local_aws.standins if isinstance(s, HttpApis)).urls["ConsoleApi"]


@pytest.fixture(scope="module")
def labeler(local_aws: Any) -> dict[str, str]:
    return signed_in(local_aws, "labelers")


@pytest.fixture
def fleet_thing(local_aws: Any) -> Iterator[str]:
    with thing_in_fleet(local_aws, "loupe-device-fleetapi") as thing:
        yield thing


def test_fleet_and_loop_need_a_token_and_a_loupe_group(local_aws: Any, base: str) -> None:
    for path in ("/fleet", "/loop"):
        status, _, body = api(f"{base}{path}")
        assert (status, body) == (401, {"message": "Unauthorized"}), path
    # a user of the pool in none of Loupe's groups (added by hand): a valid token, but 403
    outsider = signed_in(local_aws, "labelers")
    idp = local_aws.client("cognito-idp")
    idp.admin_remove_user_from_group(
        UserPoolId=local_aws.physical("ConsoleUserPool"), Username=outsider["email"], GroupName="labelers"
    )
    fresh = sign_in(
        idp,
        local_aws.physical("ConsoleUserPool"),
        local_aws.physical("ConsoleUserPoolClient"),
        outsider["email"],
        outsider["password"],
    )["IdToken"]
    for path in ("/fleet", "/loop"):
        status, _, body = api(f"{base}{path}", token=fresh)
        assert status == 403 and "no such group" in body["message"], (path, status, body)


def test_fleet_shows_a_devices_health_and_the_frames_it_sent_with_their_boxes(
    local_aws: Any, base: str, labeler: dict[str, str], fleet_thing: str
) -> None:
    thing = fleet_thing
    store = DeploymentsStore(stack_table(local_aws, "DeploymentsTable"))
    store.record_serving(thing, "7")
    s3 = local_aws.client("s3")
    raw = local_aws.physical("RawBucket")
    image = jpeg(64, 48)
    boxes = [[0, 0.41, 4.0, 5.0, 30.5, 40.0]]
    good, bad = f"raw/feedback/{thing}/f-good.jpg", f"raw/feedback/{thing}/f-bad.jpg"
    s3.put_object(
        Bucket=raw,
        Key=good,
        Body=image,
        ContentType="image/jpeg",
        Metadata={"device": thing, "model-version": "7", "max-confidence": "0.4100", "boxes": json.dumps(boxes)},
    )
    s3.put_object(Bucket=raw, Key=bad, Body=image, ContentType="image/jpeg", Metadata={"boxes": '[[0, "NaN"]]'})

    status, _, body = api(f"{base}/fleet", token=labeler["id"])
    assert status == 200, body
    device = next(d for d in body["devices"] if d["thing"] == thing)
    assert device["serving"] == "7" and device["health_updated"]
    assert device["core_device"] is False  # a thing of the group that never ran Greengrass
    frames = {f["key"]: f for f in body["frames"][thing]}
    assert frames[good]["boxes"] == [{"class_id": 0, "confidence": 0.41, "xyxy": [4.0, 5.0, 30.5, 40.0]}]
    assert frames[good]["model_version"] == "7" and "note" not in frames[good]
    assert frames[bad]["boxes"] == [] and "cannot be read" in frames[bad]["note"]
    # the presigned GET gives the frame's bytes
    with urllib.request.urlopen(frames[good]["image_url"], timeout=30) as response:  # noqa: S310 - local endpoint
        assert response.read() == image


def test_loop_counts_the_ledger_and_lists_datasets_jobs_and_alarms(
    local_aws: Any, base: str, labeler: dict[str, str]
) -> None:
    ledger = Ledger(stack_table(local_aws, "LedgerTable"))
    sha = uuid.uuid4().hex * 2
    ledger.table.put_item(
        Item={"sha256": sha, "status": "unlabeled", "updated_at": "2026-01-01T00:00:00Z", "origin": {"kind": "upload"}}
    )
    job = f"loupe-fleetapi-{uuid.uuid4().hex[:6]}"
    ledger.put_job(job, claim_id="c-fleetapi", purpose="labeling", service="groundtruth", images=[sha])
    artifacts = local_aws.physical("ArtifactBucket")
    # created now: the timeline keeps the 30 newest events, and the session's other tests make many
    doc = {"version": 900, "parent": None, "created": datetime.now(UTC).isoformat(), "counts": {"images": 1}}
    local_aws.client("s3").put_object(Bucket=artifacts, Key="datasets/v900/dataset.json", Body=json.dumps(doc))

    status, _, body = api(f"{base}/loop", token=labeler["id"])
    assert status == 200, body
    # the counts are the ledger's (other tests' uploads may still be arriving: wait until both agree)
    assert wait_until(
        lambda: (
            api(f"{base}/loop", token=labeler["id"])[2]["ledger"]
            == {s: ledger.count(s) for s in ("unlabeled", "claimed", "labeled", "rejected")}
        ),
        timeout=30,
    )
    assert body["ledger"]["unlabeled"] >= 1
    versions = [d["version"] for d in body["datasets"]]
    assert versions == sorted(versions, reverse=True) and 900 in versions  # newest first
    assert next(d for d in body["datasets"] if d["version"] == 900)["uri"].endswith("/datasets/v900/")
    run = next(r for r in body["labeling_runs"] if r["name"] == job)
    assert run["purpose"] == "labeling" and "task_token" not in json.dumps(body)
    assert {a["name"] for a in body["alarms"]} >= {local_aws.physical("DriftAlarm")}
    assert any(e["what"] == "dataset v900 (first version)" for e in body["timeline"])
