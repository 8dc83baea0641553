"""Rollout rules of the edge deployment: revise (never replace) the thing group's deployment, one rollout at a time
with the newest Approved package winning, and "deployed" meaning "serving"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loupe import settings
from loupe.deployment import document, outcomes, records, revision, rollout
from loupe.deployment.store import DeploymentsStore

GROUP = "arn:aws:iot:us-east-1:123456789012:thinggroup/fleet"
OTHER = {
    "com.acme.sensor": {
        "componentVersion": "2.1.0",
        "configurationUpdate": {"merge": '{"rate": 5}'},
        "runWith": {"posixUser": "sensor"},
    }
}


# ------------------------------------------------------------------ revise, never replace
def test_a_revision_keeps_other_components_and_changes_only_loupes() -> None:
    current = {
        "deploymentId": "d1",
        "components": {
            **OTHER,
            "com.loupe.model": {"componentVersion": "1.3.0"},
            "com.loupe.inference": {"componentVersion": "1.0.0", "configurationUpdate": {"merge": "{}"}},
            "com.loupe.old-helper": {"componentVersion": "1.0.0"},
        },
    }
    ours = {"com.loupe.model": {"componentVersion": "1.4.0"}, "com.loupe.inference": {"componentVersion": "1.0.1"}}
    revised = revision.revise_components(current, ours)
    assert revised["com.acme.sensor"] == OTHER["com.acme.sensor"]  # version, configuration and runWith kept
    assert revised["com.loupe.model"] == {"componentVersion": "1.4.0"}
    assert revised["com.loupe.inference"] == {"componentVersion": "1.0.1"}
    assert "com.loupe.old-helper" not in revised
    assert revision.revise_components(None, ours) == ours


PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/3"


class FakeGG:
    """ListDeployments (paged, like the service) + GetDeployment + CreateDeployment."""

    def __init__(self, deployments: list[dict[str, Any]]) -> None:
        self.deployments = deployments
        self.created: list[dict[str, Any]] = []
        self.list_calls: list[dict[str, Any]] = []

    def list_deployments(self, **kwargs: Any) -> dict[str, Any]:
        self.list_calls.append(kwargs)
        rows = [
            d
            for d in self.deployments
            if d["targetArn"] == kwargs.get("targetArn")
            and (kwargs.get("historyFilter") != "LATEST_ONLY" or d["isLatestForTarget"])
        ]
        start = int(kwargs.get("nextToken") or 0)
        page = rows[start : start + 1]
        out: dict[str, Any] = {"deployments": page}
        if start + 1 < len(rows):
            out["nextToken"] = str(start + 1)
        return out

    def get_deployment(self, deploymentId: str) -> dict[str, Any]:  # noqa: N803
        return next(d for d in self.deployments if d["deploymentId"] == deploymentId)

    def create_deployment(self, **doc: Any) -> dict[str, Any]:
        self.created.append(doc)
        return {"deploymentId": f"new-{len(self.created)}", "iotJobId": "job"}

    def list_core_devices(self, **_: Any) -> dict[str, Any]:
        return {"coreDevices": []}  # no device reports its nucleus version: no nucleus entry is added

    def get_component(self, arn: str, **_: Any) -> dict[str, Any]:
        """com.loupe.model's recipe: the per-model values the deployment sends as its configuration update."""
        values = {"modelVersion": "v3", "modelPackageArn": PACKAGE_ARN, "modelSha256": "ab" * 32, "modelInt8Sha256": ""}
        recipe = {"ComponentConfiguration": {"DefaultConfiguration": values}}
        return {"recipe": json.dumps(recipe).encode()}


class FakeIot:
    def describe_thing_group(self, thingGroupName: str) -> dict[str, Any]:  # noqa: N803
        return {"thingGroupArn": GROUP}


def test_start_deployment_revises_the_target_s_latest_deployment() -> None:
    gg = FakeGG(
        [
            {"deploymentId": "old", "targetArn": GROUP, "isLatestForTarget": False, "components": {}},
            {
                "deploymentId": "cur",
                "targetArn": GROUP,
                "isLatestForTarget": True,
                "creationTimestamp": "2026-11-24T08:00:00Z",
                "components": {**OTHER, "com.loupe.model": {"componentVersion": "1.2.0"}},
            },
        ]
    )
    cfg = settings.Settings(artifact_bucket="art", raw_bucket="raw", thing_group_name="fleet", deployments_table="t")
    request = {
        "package": {
            "arn": "arn:p/3",
            "group": "g",
            "version": 3,
            "status": "Approved",
            "model_data_url": "s3://b/k",
            "digests": {},
        },
        "model": {"name": "com.loupe.model", "version": "1.3.0", "model_version": "v3", "arn": "arn:m:1.3.0"},
        "inference": {"name": "com.loupe.inference", "version": "1.0.0"},
        "run_id": "r1",
    }
    out = document.start_deployment(gg, FakeIot(), request, cfg, 60, now=100.0)
    assert gg.list_calls[0] == {"targetArn": GROUP, "historyFilter": "LATEST_ONLY"}
    sent = gg.created[0]["components"]
    assert sent["com.acme.sensor"] == OTHER["com.acme.sensor"]
    assert sent["com.loupe.model"]["componentVersion"] == "1.3.0"
    assert json.loads(sent["com.loupe.model"]["configurationUpdate"]["merge"])["modelVersion"] == "v3"
    assert out["revised"] == "cur" and out["kept"] == ["com.acme.sensor"] and out["model_version"] == "v3"


# ------------------------------------------------------------------ one rollout at a time
@pytest.fixture
def store() -> Iterator[DeploymentsStore]:
    with mock_aws():
        ddb = boto3.resource("dynamodb", region_name="us-east-1")
        t = ddb.create_table(
            TableName="deployments",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DeploymentsStore(t)


def test_the_rollout_lock_admits_one_run_per_thing_group(store: DeploymentsStore) -> None:
    assert store.acquire_lock("fleet", "run-a", 60, now=1000.0)
    assert not store.acquire_lock("fleet", "run-b", 60, now=1001.0)
    assert store.acquire_lock("other-fleet", "run-b", 60, now=1001.0)  # per thing group
    assert store.acquire_lock("fleet", "run-a", 60, now=1002.0)  # a retried step keeps it
    store.release_lock("fleet", "run-b")  # not the owner: nothing happens
    assert not store.acquire_lock("fleet", "run-b", 60, now=1003.0)
    store.release_lock("fleet", "run-a")
    assert store.acquire_lock("fleet", "run-b", 60, now=1004.0)
    assert store.acquire_lock("fleet", "run-c", 60, now=1004.0 + 61)  # a crashed holder expires


class FakeSM:
    def __init__(self, packages: dict[str, tuple[int, str]]) -> None:
        self.packages = packages

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
        version, status = self.packages[ModelPackageName]
        return {
            "ModelPackageArn": ModelPackageName,
            "ModelPackageGroupName": "g",
            "ModelPackageVersion": version,
            "ModelApprovalStatus": status,
            "InferenceSpecification": {"Containers": [{"ModelDataUrl": "s3://b/k"}]},
        }

    def list_model_packages(self, **kwargs: Any) -> dict[str, Any]:
        rows = [
            {"ModelPackageArn": a, "ModelPackageVersion": v, "ModelApprovalStatus": s, "CreationTime": v}
            for a, (v, s) in self.packages.items()
            if s == kwargs.get("ModelApprovalStatus", s)
        ]
        return {"ModelPackageSummaryList": sorted(rows, key=lambda r: r["CreationTime"], reverse=True)}


def run_state(version: int, mode: str = "approved", run_id: str = "r") -> dict[str, Any]:
    return {
        "thing_group": "fleet",
        "run_id": run_id,
        "timeout_seconds": "60",
        "mode": mode,
        "package": {
            "arn": f"p/{version}",
            "group": "g",
            "version": version,
            "status": "Approved",
            "model_data_url": "s3://b/k",
            "digests": {},
        },
    }


def test_a_late_approval_of_an_older_package_is_superseded(store: DeploymentsStore) -> None:
    sm = FakeSM({"p/4": (4, "Approved"), "p/5": (5, "Approved"), "p/6": (6, "Rejected")})
    late = rollout.lock_and_decide(sm, store, run_state(4, run_id="late"))
    assert late["lock"]["held"] and late["status"] == "superseded" and "package 5" in late["reason"]
    store.release_lock("fleet", "late")
    newest = rollout.lock_and_decide(sm, store, run_state(5, run_id="newest"))
    assert newest["status"] == "ready"
    waiting = rollout.lock_and_decide(sm, store, run_state(4, mode="rollback", run_id="rb"))
    assert waiting["lock"] == {"held": False, "wait_seconds": document.poll_interval(60), "holder": "newest"}
    store.release_lock("fleet", "newest")
    rollback = rollout.lock_and_decide(sm, store, run_state(4, mode="rollback", run_id="rb"))
    assert rollback["status"] == "ready"  # going back to an earlier Approved package is not "late"
    store.release_lock("fleet", "rb")
    sm.packages["p/5"] = (5, "Rejected")  # rejected while its run waited for the lock
    assert rollout.lock_and_decide(sm, store, run_state(5, run_id="again"))["status"] == "nothing_to_deploy"


def test_recording_the_outcome_releases_the_lock(store: DeploymentsStore) -> None:
    state = {**run_state(5, run_id="run-a"), "lock": {"held": True}}
    assert store.acquire_lock("fleet", "run-a", 600)
    records.record(store, state, "SUPERSEDED", "newer package")
    assert store.acquire_lock("fleet", "run-b", 600)


# ------------------------------------------------------------------ deployed means serving
class EffectiveGG:
    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses

    def list_effective_deployments(self, coreDeviceThingName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        return {
            "effectiveDeployments": [
                {"deploymentId": "d1", "coreDeviceExecutionStatus": self.statuses[coreDeviceThingName]}
            ]
        }


def test_a_device_is_done_only_when_it_serves_the_new_model(store: DeploymentsStore) -> None:
    gg = EffectiveGG({"a": "SUCCEEDED", "b": "SUCCEEDED"})
    store.record_serving("a", "v7")
    store.record_serving("b", "v6")  # deployed, still answering with the old model
    early = outcomes.device_outcomes(gg, "d1", ["a", "b"], deadline=100.0, now=50.0, store=store, model_version="v7")
    assert not early["done"]
    assert early["devices"]["a"]["status"] == "COMPLETED" and early["devices"]["b"]["status"] == "PENDING"
    late = outcomes.device_outcomes(gg, "d1", ["a", "b"], deadline=100.0, now=100.0, store=store, model_version="v7")
    assert late["done"] and late["devices"]["b"]["status"] == "NOT_SERVING"
    assert "deployed, not serving" in late["devices"]["b"]["reason"] and "v6" in late["devices"]["b"]["reason"]
    outcome, reason = outcomes.overall(late)
    assert outcome == "DEPLOYED_NOT_SERVING" and reason.startswith("deployed, not serving")
    store.record_serving("b", "v7")
    now = outcomes.device_outcomes(gg, "d1", ["a", "b"], deadline=100.0, now=100.0, store=store, model_version="v7")
    assert outcomes.overall(now)[0] == "COMPLETED"


def test_health_without_a_model_version_records_nothing(store: DeploymentsStore) -> None:
    assert not store.record_serving("a", None)
    assert store.serving_version("a") is None


def test_what_many_devices_serve_is_read_in_batches(store: DeploymentsStore) -> None:
    things = [f"dev-{i:03d}" for i in range(150)]
    for i, thing in enumerate(things[:120]):
        store.record_serving(thing, f"v{i % 2}")
    reported = store.serving_versions(things)
    assert len(reported) == 120 and reported["dev-000"] == "v0" and reported["dev-119"] == "v1"
    assert "dev-149" not in reported
