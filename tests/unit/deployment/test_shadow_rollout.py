"""Shadow mode from the cloud: which package state changes start a shadow run (and end one), what such a run
deploys, when it must give up once it holds the lock, and what its record leaves in the deployments table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from loupe.deployment import records, rollout, routing, shadow
from loupe.deployment.store import DeploymentsStore

ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/{}".format


class Registry:
    """Packages by ARN: (version, approval status, metadata)."""

    def __init__(self, packages: dict[str, tuple[int, str, dict[str, str]]]) -> None:
        self.packages = packages

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
        if ModelPackageName not in self.packages:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no such package"}}, "Describe")
        version, status, meta = self.packages[ModelPackageName]
        return {
            "ModelPackageArn": ModelPackageName,
            "ModelPackageGroupName": "g",
            "ModelPackageVersion": version,
            "ModelApprovalStatus": status,
            "CustomerMetadataProperties": {"package_sha256": "a" * 64, **meta},
            "InferenceSpecification": {
                "Containers": [{"ModelDataUrl": f"s3://loupe-artifacts/models/{version}/model.tar.gz"}]
            },
        }

    def list_model_packages(self, **kwargs: Any) -> dict[str, Any]:
        rows = [
            {"ModelPackageArn": a, "ModelPackageVersion": v, "ModelApprovalStatus": s, "CreationTime": v}
            for a, (v, s, _) in self.packages.items()
            if s == kwargs.get("ModelApprovalStatus", s)
        ]
        return {"ModelPackageSummaryList": sorted(rows, key=lambda r: r["CreationTime"], reverse=True)}


class Executions:
    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}

    def start_execution(self, stateMachineArn: str, name: str, input: str) -> dict[str, str]:  # noqa: N803, A002
        if name in self.started:
            raise ClientError({"Error": {"Code": "ExecutionAlreadyExists", "Message": name}}, "StartExecution")
        self.started[name] = json.loads(input)
        return {"executionArn": f"{stateMachineArn}:{name}"}


class Things:
    def list_things_in_thing_group(self, **_: Any) -> dict[str, Any]:
        return {"things": ["loupe-device-a", "loupe-device-b"]}


@pytest.fixture
def store() -> Iterator[DeploymentsStore]:
    with mock_aws():
        table = boto3.resource("dynamodb", region_name="us-east-1").create_table(
            TableName="deployments",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DeploymentsStore(table)


PASSED = {"gate": "passed", "test_map50": "0.81"}
REFUSED = {"gate": "refused", "gate_refusal": "test mAP50 0.41 below 0.5"}


def change(n: int, status: str, when: str = "2026-12-06T10:00:00Z") -> dict[str, Any]:
    return {
        "ModelPackageArn": ARN(n),
        "ModelPackageGroupName": "g",
        "ModelPackageVersion": n,
        "ModelApprovalStatus": status,
        "LastModifiedTime": when,
    }


def handle(detail: dict[str, Any], sm: Registry, sfn: Executions, store: DeploymentsStore) -> dict[str, Any]:
    return routing.on_package_event(detail, sm, sfn, store, "arn:sm", "fleet", "g")


def production(store: DeploymentsStore, n: int = 1) -> None:
    store.mark_target("fleet", {"arn": ARN(n), "version": n}, f"dep-{n}", f"run-{n}")


# ------------------------------------------------------------------ which changes start a shadow run
def test_a_gate_passing_package_starts_one_shadow_run(store: DeploymentsStore) -> None:
    sm, sfn = Registry({ARN(1): (1, "Approved", {}), ARN(2): (2, "PendingManualApproval", PASSED)}), Executions()
    out = handle(change(2, "PendingManualApproval"), sm, sfn, store)
    assert out["action"] == "started" and out["request"] == {"package_arn": ARN(2), "mode": "shadow"}
    assert out["execution_name"].startswith("shadow-v2-")
    # SageMaker may send an event more than once per change: the second delivery starts nothing
    assert handle(change(2, "PendingManualApproval"), sm, sfn, store)["action"] == "duplicate"
    assert len(sfn.started) == 1


@pytest.mark.parametrize(
    ("status", "meta", "why"),
    [
        ("PendingManualApproval", REFUSED, "the gate refused it"),
        ("PendingManualApproval", {}, "no gate verdict"),
        ("PendingManualApproval", {"gate": "maybe"}, "no gate verdict"),
        ("Approved", PASSED, "it is Approved"),  # the registry now, not the (older) event, decides
    ],
)
def test_a_refused_or_undecided_or_already_decided_package_is_never_shadowed(
    store: DeploymentsStore, status: str, meta: dict[str, str], why: str
) -> None:
    sm, sfn = Registry({ARN(2): (2, status, meta)}), Executions()
    out = handle(change(2, "PendingManualApproval"), sm, sfn, store)
    assert out["action"] == "ignored" and why in out["reason"], out
    assert sfn.started == {}


def test_rejecting_the_shadowed_candidate_sends_production_alone(store: DeploymentsStore) -> None:
    sm = Registry({ARN(1): (1, "Approved", {}), ARN(2): (2, "Rejected", PASSED), ARN(3): (3, "Rejected", PASSED)})
    sfn = Executions()
    production(store)
    store.mark_shadow("fleet", {"arn": ARN(2), "version": 2}, "cand-2", "dep-s", "run-s")
    out = handle(change(2, "Rejected"), sm, sfn, store)
    assert out["action"] == "started"
    assert out["request"] == {"package_arn": ARN(1), "mode": "end_shadow", "ended": ARN(2)}
    # a rejected package that neither runs nor is shadowed: nothing to undo
    assert handle(change(3, "Rejected"), sm, sfn, store)["action"] == "ignored"
    assert len(sfn.started) == 1


# ------------------------------------------------------------------ what a shadow run deploys
def shadow_request(n: int) -> dict[str, Any]:
    return {"request": {"package_arn": ARN(n), "mode": "shadow"}, "thing_group": "fleet"}


def test_a_shadow_run_sends_production_with_the_candidate(store: DeploymentsStore) -> None:
    sm = Registry({ARN(1): (1, "Approved", {}), ARN(2): (2, "PendingManualApproval", PASSED)})
    production(store)
    out = shadow.resolve_shadow(sm, Things(), store, shadow_request(2), "fleet")
    assert out["status"] == "ready" and out["mode"] == "shadow"
    assert out["package"]["arn"] == ARN(1) and out["candidate"]["arn"] == ARN(2)
    assert out["devices"] == ["loupe-device-a", "loupe-device-b"]


def test_no_production_model_means_nothing_to_shadow(store: DeploymentsStore) -> None:
    sm = Registry({ARN(2): (2, "PendingManualApproval", PASSED)})
    out = shadow.resolve_shadow(sm, Things(), store, shadow_request(2), "fleet")
    assert out["status"] == "nothing_to_deploy" and "runs no production model" in out["reason"]
    assert out["candidate"]["arn"] == ARN(2)


def test_a_refused_candidate_is_refused_again_when_the_run_resolves(store: DeploymentsStore) -> None:
    sm = Registry({ARN(1): (1, "Approved", {}), ARN(2): (2, "PendingManualApproval", REFUSED)})
    production(store)
    out = shadow.resolve_shadow(sm, Things(), store, shadow_request(2), "fleet")
    assert out["status"] == "nothing_to_deploy" and "gate refused" in out["reason"]


# ------------------------------------------------------------------ once the run holds the lock
def locked_state(mode: str, production_n: int = 1, **extra: Any) -> dict[str, Any]:
    def pkg(n: int, status: str) -> dict[str, Any]:
        return {
            "arn": ARN(n),
            "group": "g",
            "version": n,
            "status": status,
            "model_data_url": "s3://b/k",
            "digests": {},
        }

    return {
        "thing_group": "fleet",
        "run_id": f"run-{mode}",
        "timeout_seconds": "60",
        "mode": mode,
        "package": pkg(production_n, "Approved"),
        "candidate": pkg(2, "PendingManualApproval"),
        **extra,
    }


def test_a_shadow_run_that_waited_behind_an_approval_deploys_nothing(store: DeploymentsStore) -> None:
    sm = Registry({ARN(1): (1, "Approved", {}), ARN(2): (2, "PendingManualApproval", PASSED)})
    production(store)
    assert rollout.lock_and_decide(sm, store, locked_state("shadow"))["status"] == "ready"
    store.release_lock("fleet", "run-shadow")
    # the candidate was approved (and deployed) while this run waited: it must not send package 1 back
    sm.packages[ARN(2)] = (2, "Approved", PASSED)
    production(store, 2)
    out = rollout.lock_and_decide(sm, store, locked_state("shadow"))
    assert out["status"] == "nothing_to_deploy" and "now runs" in out["reason"]
    store.release_lock("fleet", "run-shadow")
    production(store, 1)  # production unchanged, the candidate decided meanwhile
    out = rollout.lock_and_decide(sm, store, locked_state("shadow"))
    assert out["status"] == "nothing_to_deploy" and "it is Approved" in out["reason"]


def test_an_end_shadow_run_needs_its_candidate_still_on_the_group(store: DeploymentsStore) -> None:
    sm = Registry({ARN(1): (1, "Approved", {}), ARN(2): (2, "Rejected", PASSED)})
    production(store)
    state = locked_state("end_shadow", request={"package_arn": ARN(1), "mode": "end_shadow", "ended": ARN(2)})
    out = rollout.lock_and_decide(sm, store, state)
    assert out["status"] == "nothing_to_deploy" and "no longer runs" in out["reason"]
    store.release_lock("fleet", "run-end_shadow")
    store.mark_shadow("fleet", {"arn": ARN(2), "version": 2}, "cand-2", "dep-s", "run-s")
    assert rollout.lock_and_decide(sm, store, state)["status"] == "ready"


# ------------------------------------------------------------------ what the record leaves
def recorded(mode: str, deployment_id: str, outcome: str, **extra: Any) -> dict[str, Any]:
    state = {
        "thing_group": "fleet",
        "run_id": f"run-{deployment_id}",
        "mode": mode,
        "package": {"arn": ARN(1), "version": 1},
        "deployment": {"deployment_id": deployment_id},
        "outcomes": {"devices": {"loupe-device-a": {"status": "COMPLETED" if outcome == "COMPLETED" else "FAILED"}}},
        **extra,
    }
    return state  # the state the Record step receives


def test_the_shadow_lasts_until_a_deployment_without_a_candidate_completes(store: DeploymentsStore) -> None:
    production(store)
    candidate = {"arn": ARN(2), "version": 2}
    shadow_run = {"candidate": candidate, "shadow": {"model": {"model_version": "cand-2", "version": "1.2.0"}}}
    shadow_run["shadow"]["every_nth_frame"] = 5
    store.mark_shadow("fleet", candidate, "cand-2", "dep-s", "run-dep-s")
    summary = records.record(store, recorded("shadow", "dep-s", "COMPLETED", **shadow_run), "COMPLETED")
    assert store.shadow_target("fleet")["package_arn"] == ARN(2)
    assert summary["candidate"]["model_version"] == "cand-2" and "every 5th frame" in summary["message"]
    assert summary["subject"].startswith("Loupe shadow of model cand-2 beside 1")
    # a failed deployment of something else leaves the shadow where it is (the devices rolled back to it)
    records.record(store, recorded("approved", "dep-x", "FAILED"), "FAILED")
    assert store.shadow_target("fleet") is not None
    records.record(store, recorded("approved", "dep-y", "COMPLETED"), "COMPLETED")
    assert store.shadow_target("fleet") is None
    assert store.package_shadow(ARN(2))["model_version"] == "cand-2"  # the registry still finds its counters


def test_a_shadow_deployment_that_rolled_back_never_started_the_shadow(store: DeploymentsStore) -> None:
    production(store)
    store.mark_shadow("fleet", {"arn": ARN(2), "version": 2}, "cand-2", "dep-s", "run-dep-s")
    records.record(store, recorded("shadow", "dep-s", "FAILED", candidate={"arn": ARN(2), "version": 2}), "FAILED")
    assert store.shadow_target("fleet") is None


def test_a_shadow_run_that_ended_before_publishing_names_the_candidate_by_its_package(store: DeploymentsStore) -> None:
    state = {
        "thing_group": "fleet",
        "run_id": "run-early",
        "mode": "shadow",
        "candidate": {"arn": ARN(2), "version": 2},
    }
    summary = records.record(store, state, "NOTHING_TO_DEPLOY", "thing group fleet runs no production model yet")
    assert summary["subject"] == "Loupe shadow of model package 2 beside -: NOTHING_TO_DEPLOY"
    assert "runs no production model yet" in summary["message"]


def test_a_rejection_while_the_shadow_deployment_is_being_created_still_ends_it(store: DeploymentsStore) -> None:
    from types import SimpleNamespace

    from loupe.deployment import workflow

    sm = Registry({ARN(1): (1, "Approved", {}), ARN(2): (2, "PendingManualApproval", PASSED)})
    production(store)
    aws = SimpleNamespace(sagemaker=sm, store=store, settings=SimpleNamespace(thing_group_name="fleet"))
    state = locked_state("shadow", shadow={"model": {"model_version": "cand-2", "version": "1.2.0"}})
    assert workflow.lock_step(aws, state)["status"] == "ready"  # type: ignore[arg-type]
    # rejected now, before the Deploy step has created anything: the group's candidate is already known
    sm.packages[ARN(2)] = (2, "Rejected", PASSED)
    out = handle(change(2, "Rejected"), sm, Executions(), store)
    assert out["action"] == "started" and out["request"]["mode"] == "end_shadow"
    # and a shadow run that stops before deploying leaves no candidate behind
    records.record(store, {**state, "lock": {"held": True}}, "ERROR", "CreateDeployment refused")
    assert store.shadow_target("fleet") is None
