"""loupe.deployment: digest checks, package events, device outcomes and records, with in-memory fakes."""

from __future__ import annotations

import hashlib
import json
import tarfile
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.archives import tar_gz

from loupe import settings
from loupe.deployment import document, errors, outcomes, records, routing, verification
from loupe.deployment.packages import Package
from loupe.deployment.store import DeploymentsStore


def h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package(data: bytes, **digests: str) -> Package:
    return Package(
        arn="arn:aws:sagemaker:us-east-1:123456789012:model-package/g/3",
        group="g",
        version=3,
        status="Approved",
        model_data_url="s3://b/models/3/model.tar.gz",
        digests={"package_sha256": h(data), **digests},
    )


ONNX = b"onnx-bytes"
CARD = b'{"version": "v3"}'


def test_check_digests_accepts_the_registered_bytes() -> None:
    data = tar_gz({"model.onnx": ONNX, "model_card.json": CARD})
    files = verification.check_digests(package(data, model_sha256=h(ONNX), model_card_sha256=h(CARD)), data)
    assert files == {"model.onnx": ONNX, "model_card.json": CARD}
    assert verification.model_version_of(files, package(data)) == "v3"
    assert verification.model_version_of({"model.onnx": ONNX}, package(data)) == "3"


def test_a_changed_package_is_refused() -> None:
    data = tar_gz({"model.onnx": ONNX})
    pkg = package(data)
    forged = tar_gz({"model.onnx": ONNX + b"!"})
    with pytest.raises(errors.ArtifactDigestMismatch, match="does not match the registered"):
        verification.check_digests(pkg, forged)


def test_a_changed_file_inside_a_repacked_package_is_refused() -> None:
    forged = tar_gz({"model.onnx": b"other"})
    pkg = package(forged, model_sha256=h(ONNX))  # package digest re-registered, inner digest not
    with pytest.raises(errors.ArtifactDigestMismatch, match="model.onnx"):
        verification.check_digests(pkg, forged)


def test_a_package_without_registered_digest_is_refused() -> None:
    data = tar_gz({"model.onnx": ONNX})
    pkg = package(data)
    pkg.digests = {}
    with pytest.raises(errors.ArtifactDigestMismatch, match="no registered package_sha256"):
        verification.check_digests(pkg, data)


def test_unpack_refuses_paths_links_and_garbage() -> None:
    with pytest.raises(errors.PackageInvalid, match="plain top-level file"):
        verification.unpack_package(tar_gz({"../evil.onnx": b"x", "model.onnx": ONNX}))
    link = tarfile.TarInfo("model_int8.onnx")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(errors.PackageInvalid, match="plain top-level file"):
        verification.unpack_package(tar_gz({"model.onnx": ONNX}, [link]))
    with pytest.raises(errors.PackageInvalid, match="no model.onnx"):
        verification.unpack_package(tar_gz({"weights.pt": b"x"}))
    with pytest.raises(errors.PackageInvalid, match="readable tar.gz"):
        verification.unpack_package(b"not a tarball")


def test_settings_are_validated() -> None:
    env = {"ARTIFACT_BUCKET": "a", "THING_GROUP_NAME": "g", "DEPLOYMENTS_TABLE": "t"}
    s = settings.from_mapping(env)
    assert (s.rollout_base_rate, s.abort_failure_percent) == (5, 20)
    with pytest.raises(settings.SettingsError, match=r"missing environment variable\(s\): DEPLOYMENTS_TABLE"):
        settings.from_mapping({"ARTIFACT_BUCKET": "a", "THING_GROUP_NAME": "g"}).require(
            "artifact_bucket", "thing_group_name", "deployments_table"
        )
    with pytest.raises(settings.SettingsError, match="ABORT_FAILURE_PERCENT"):
        settings.from_mapping({**env, "ABORT_FAILURE_PERCENT": "0"})
    with pytest.raises(settings.SettingsError, match="invalid"):
        settings.from_mapping({**env, "ROLLOUT_BASE_RATE": "five"})


def test_deployment_document_has_the_policies_the_issue_asks_for() -> None:
    s = settings.Settings(
        artifact_bucket="art",
        raw_bucket="raw",
        thing_group_name="fleet",
        deployments_table="t",
        abort_failure_percent=30,
    )
    doc = document.deployment_document(
        "arn:aws:iot:us-east-1:1:thinggroup/fleet",
        "n",
        {"name": "com.loupe.model", "version": "1.3.0"},
        {"name": "com.loupe.inference", "version": "1.0.2"},
        s,
        timeout_seconds=90,
    )
    assert doc["deploymentPolicies"]["failureHandlingPolicy"] == "ROLLBACK"
    assert doc["deploymentPolicies"]["componentUpdatePolicy"]["action"] == "NOTIFY_COMPONENTS"
    job = doc["iotJobConfiguration"]
    assert job["jobExecutionsRolloutConfig"]["exponentialRate"]["baseRatePerMinute"] == 5
    assert job["abortConfig"]["criteriaList"][0]["thresholdPercentage"] == 30.0
    assert job["timeoutConfig"]["inProgressTimeoutInMinutes"] == 2
    update = doc["components"]["com.loupe.inference"]["configurationUpdate"]
    assert json.loads(update["merge"]) == {"settings": {"feedback": {"bucket": "raw"}}}
    # a model without an uncertainty band: the recipe's default band, not the previous model's; and the deployed
    # version's IPC policy, not the one an older version left in the device's configuration
    assert update["reset"] == [
        "/accessControl",
        "/settings/shadow",  # no candidate in this deployment: a shadow an earlier one started ends
        "/settings/feedback/bandLow",
        "/settings/feedback/bandHigh",
        "/settings/feedback/criterion",
    ]


def test_the_deployment_sets_the_models_own_uncertainty_band() -> None:
    s = settings.Settings(artifact_bucket="art", raw_bucket="raw", thing_group_name="fleet", deployments_table="t")
    band = {"bandLow": 0.05, "bandHigh": 0.21, "criterion": "top"}
    model = {"name": "com.loupe.model", "version": "1.3.0", "feedback_band": band}
    doc = document.deployment_document("arn:t", "n", model, {"name": "com.loupe.inference", "version": "1"}, s, 90)
    update = doc["components"]["com.loupe.inference"]["configurationUpdate"]
    assert update["reset"] == ["/accessControl", "/settings/shadow"]  # the band is merged, not reset
    assert json.loads(update["merge"]) == {"settings": {"feedback": {"bucket": "raw", **band}}}


def test_the_band_comes_from_the_verified_model_card() -> None:
    from loupe.deployment.components import feedback_band

    entry = {"bandLow": 0.05, "bandHigh": 0.21, "criterion": "top", "share": 0.2, "frames": 45, "method": "c"}
    card = json.dumps({"version": "3", "uncertainty_band": entry}).encode()
    assert feedback_band({"model.onnx": ONNX, "model_card.json": card}) == {
        "bandLow": 0.05,
        "bandHigh": 0.21,
        "criterion": "top",
    }
    assert feedback_band({"model.onnx": ONNX, "model_card.json": CARD}) is None  # a card without one
    assert feedback_band({"model.onnx": ONNX}) is None
    upside_down = json.dumps({"uncertainty_band": {**entry, "bandLow": 0.5}}).encode()
    assert feedback_band({"model.onnx": ONNX, "model_card.json": upside_down}) is None


# ------------------------------------------------------------------ device outcomes
class FakeGG:
    def __init__(self, per_device: dict[str, list[dict[str, Any]] | Exception]) -> None:
        self.per_device = per_device

    def list_effective_deployments(self, coreDeviceThingName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        got = self.per_device[coreDeviceThingName]
        if isinstance(got, Exception):
            raise got
        return {"effectiveDeployments": got}


def test_device_outcomes_map_statuses_and_time_out_the_silent() -> None:
    gg = FakeGG(
        {
            "ok": [{"deploymentId": "d1", "coreDeviceExecutionStatus": "SUCCEEDED"}],
            "bad": [
                {
                    "deploymentId": "d1",
                    "coreDeviceExecutionStatus": "FAILED",
                    "reason": "inference ERRORED; rolled back",
                    "statusDetails": {"errorStack": ["DEPLOYMENT_FAILURE", "COMPONENT_BROKEN"]},
                }
            ],
            "old": [{"deploymentId": "d0", "coreDeviceExecutionStatus": "SUCCEEDED"}],
            "down": RuntimeError("ResourceNotFoundException"),
        }
    )
    running = outcomes.device_outcomes(gg, "d1", ["ok", "bad", "old", "down"], deadline=100.0, now=50.0)
    assert not running["done"]
    assert running["devices"]["ok"]["status"] == "COMPLETED"
    assert running["devices"]["bad"]["status"] == "FAILED"
    assert "COMPONENT_BROKEN" in running["devices"]["bad"]["reason"]
    assert running["devices"]["old"]["status"] == "PENDING"
    late = outcomes.device_outcomes(gg, "d1", ["ok", "bad", "old", "down"], deadline=100.0, now=100.0)
    assert late["done"]
    assert late["devices"]["down"]["status"] == "TIMED_OUT"
    assert late["counts"] == {"COMPLETED": 1, "FAILED": 1, "TIMED_OUT": 2}
    assert outcomes.overall(late)[0] == "PARTIAL"
    assert outcomes.overall({"counts": {"COMPLETED": 2}})[0] == "COMPLETED"
    assert outcomes.overall({"counts": {"FAILED": 2}})[0] == "FAILED"


class RollingJob:
    """An IoT job whose rollout has reached none of its targets yet (DescribeJob: processingTargets set)."""

    def describe_job(self, jobId: str) -> dict[str, Any]:  # noqa: N803
        return {"job": {"jobId": jobId, "jobProcessDetails": {"processingTargets": ["arn:group"]}}}

    def list_job_executions_for_job(self, **_: Any) -> dict[str, Any]:
        return {"executionSummaries": []}


def test_a_job_with_no_execution_yet_is_not_an_outcome() -> None:
    deployment = {"deployment_id": "d1", "iot_job_id": "j1", "model_version": "3"}
    first = outcomes.job_outcomes(RollingJob(), FakeGG({}), deployment, deadline=100.0, now=1.0, expected=4)
    assert not first["done"] and first["counts"] == {}  # not "FAILED" with an empty reason
    late = outcomes.job_outcomes(RollingJob(), FakeGG({}), deployment, deadline=100.0, now=100.0, expected=4)
    assert late["done"] and late["counts"] == {"NOT_REACHED": 4}
    assert outcomes.overall(late) == ("FAILED", "4 not_reached")
    outcome, reason = outcomes.overall({"counts": {}})
    assert outcome == "FAILED" and "reached none" in reason


def test_poll_interval_scales_with_the_timeout() -> None:
    assert document.poll_interval(10) == 1
    assert document.poll_interval(1800) == 60
    assert document.poll_interval(200) == 10


def test_a_deployment_is_checked_soon_and_then_less_often_up_to_its_interval() -> None:
    started = 1000.0
    deployment = {"started": started, "deadline": started + 600}  # poll_interval(600) == 30
    assert document.first_check(600) == 2 and document.first_check(10) == 1  # never past a short timeout's interval
    waits, now = [], started + document.first_check(600)
    while now < started + 300:
        waits.append(document.next_check(deployment, now))
        now += waits[-1]
    assert waits[:3] == [2, 2, 2]  # the first seconds: where a healthy fleet answers
    assert waits == sorted(waits) and max(waits) == 30  # then less often, never past the interval
    assert len(waits) < 30  # 300 s of waiting in fewer checks than 2-second polling's 150


# ------------------------------------------------------------------ package events
def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


class FakeTable:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def delete_item(self, Key: dict[str, str], ExpressionAttributeValues: dict[str, str], **_: Any) -> None:  # noqa: N803
        item = self.items.get((Key["pk"], Key["sk"]))
        if item is None or item.get("deployment_id") != ExpressionAttributeValues[":d"]:
            raise client_error("ConditionalCheckFailedException", "DeleteItem")
        del self.items[(Key["pk"], Key["sk"])]

    def put_item(self, Item: dict[str, Any]) -> None:  # noqa: N803
        self.items[(Item["pk"], Item["sk"])] = dict(Item)

    def get_item(self, Key: dict[str, str], **_: Any) -> dict[str, Any]:  # noqa: N803
        item = self.items.get((Key["pk"], Key["sk"]))
        return {"Item": item} if item else {}

    def query(self, ExpressionAttributeValues: dict[str, str], ScanIndexForward: bool = True, **_: Any) -> dict:  # noqa: N803
        pk, prefix = ExpressionAttributeValues[":pk"], ExpressionAttributeValues[":run"]
        rows = sorted((k, v) for k, v in self.items.items() if k[0] == pk and k[1].startswith(prefix))
        if not ScanIndexForward:
            rows.reverse()
        return {"Items": [v for _, v in rows]}


class FakeSM:
    def __init__(self, packages: dict[str, tuple[int, str]]) -> None:
        self.packages = packages  # arn -> (version, status)

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
        version, status = self.packages[ModelPackageName]
        return {"ModelPackageArn": ModelPackageName, "ModelApprovalStatus": status, "ModelPackageVersion": version}

    def list_model_packages(self, **_: Any) -> dict[str, Any]:
        return {
            "ModelPackageSummaryList": [
                {"ModelPackageArn": a, "ModelPackageVersion": v, "ModelApprovalStatus": s, "CreationTime": v}
                for a, (v, s) in self.packages.items()
            ]
        }


class FakeSFN:
    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}

    def start_execution(self, stateMachineArn: str, name: str, input: str) -> dict[str, str]:  # noqa: N803, A002
        if name in self.started:
            raise client_error("ExecutionAlreadyExists", "StartExecution")
        self.started[name] = json.loads(input)
        return {"executionArn": f"{stateMachineArn}:{name}"}


ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/{}".format


def event(n: int, status: str, when: str = "2026-11-21T10:00:00Z") -> dict[str, Any]:
    return {
        "ModelPackageArn": ARN(n),
        "ModelPackageGroupName": "g",
        "ModelPackageVersion": n,
        "ModelApprovalStatus": status,
        "LastModifiedTime": when,
    }


def handle(detail: dict[str, Any], sm: FakeSM, sfn: FakeSFN, table: FakeTable) -> dict[str, Any]:
    return routing.on_package_event(detail, sm, sfn, DeploymentsStore(table), "arn:sm", "fleet", "g")


def test_an_approval_starts_one_run_and_a_redelivery_none() -> None:
    sm, sfn, table = FakeSM({ARN(1): (1, "Approved")}), FakeSFN(), FakeTable()
    first = handle(event(1, "Approved"), sm, sfn, table)
    assert first["action"] == "started" and first["request"] == {"package_arn": ARN(1), "mode": "approved"}
    assert handle(event(1, "Approved"), sm, sfn, table)["action"] == "duplicate"
    assert handle(event(1, "Approved", "2026-11-22T00:00:00Z"), sm, sfn, table)["action"] == "started"
    assert len(sfn.started) == 2


def test_events_that_need_no_deployment_are_ignored_with_a_reason() -> None:
    sm, sfn, table = FakeSM({ARN(1): (1, "PendingManualApproval")}), FakeSFN(), FakeTable()
    assert handle(event(1, "PendingManualApproval"), sm, sfn, table)["action"] == "ignored"
    other = {**event(1, "Approved"), "ModelPackageGroupName": "someone-else"}
    assert handle(other, sm, sfn, table)["action"] == "ignored"
    assert handle(event(1, "Rejected"), sm, sfn, table)["reason"].endswith("nothing to undo")
    assert sfn.started == {}
    with pytest.raises(errors.PackageInvalid):
        handle({"ModelApprovalStatus": "Approved"}, sm, sfn, table)


def test_rejecting_the_running_package_goes_back_to_the_last_one_that_ran() -> None:
    # 1 ran, then 3 ran; 2 is approved but never ran (newer than 1): the rollback must pick 1
    sm = FakeSM({ARN(1): (1, "Approved"), ARN(2): (2, "Approved"), ARN(3): (3, "Rejected")})
    sfn, table = FakeSFN(), FakeTable()
    for when, n in (("2026-11-20T00:00:00Z", 1), ("2026-11-21T00:00:00Z", 3)):
        state = {"package": {"arn": ARN(n), "version": n}, "thing_group": "fleet", "run_id": f"r{n}"}
        state["outcomes"] = {"devices": {"d1": {"status": "COMPLETED"}}}
        table.items[("TARGET#fleet", f"RUN#{when}#r{n}")] = {"package_arn": ARN(n), "outcome": "COMPLETED"}
        DeploymentsStore(table).mark_target("fleet", state["package"], "dep", f"r{n}")
    out = handle(event(3, "Rejected"), sm, sfn, table)
    assert out["action"] == "started"
    assert out["request"] == {"package_arn": ARN(1), "mode": "rollback", "rejected": ARN(3)}


def test_rejecting_the_only_package_starts_a_run_with_nothing_to_deploy() -> None:
    sm, sfn, table = FakeSM({ARN(1): (1, "Rejected")}), FakeSFN(), FakeTable()
    DeploymentsStore(table).mark_target("fleet", {"arn": ARN(1), "version": 1}, "dep", "r1")
    out = handle(event(1, "Rejected"), sm, sfn, table)
    assert out["request"]["package_arn"] is None
    assert "no other package is Approved" in out["request"]["reason"]


def test_record_keeps_the_previous_target_when_every_device_rolled_back() -> None:
    table = FakeTable()
    DeploymentsStore(table).mark_target("fleet", {"arn": ARN(1), "version": 1}, "dep1", "r1")
    state = {
        "package": {"arn": ARN(2), "version": 2},
        "thing_group": "fleet",
        "run_id": "r2",
        "deployment": {"deployment_id": "dep2"},
        "outcomes": {"devices": {"d1": {"status": "FAILED", "reason": "ERRORED; rolled back"}}},
    }
    summary = records.record(DeploymentsStore(table), state, "FAILED", "1 failed")
    assert DeploymentsStore(table).current_target("fleet")["package_arn"] == ARN(1)
    assert table.items[("DEPLOYMENT#dep2", "DEVICE#d1")]["status"] == "FAILED"
    assert "d1: FAILED - ERRORED; rolled back" in summary["message"]
    state["outcomes"]["devices"]["d1"] = {"status": "COMPLETED"}
    records.record(DeploymentsStore(table), {**state, "run_id": "r3"}, "COMPLETED")
    assert DeploymentsStore(table).current_target("fleet")["package_arn"] == ARN(2)


def test_run_names_are_valid_execution_names() -> None:
    name = routing.run_name("rollback", 123456, "x" * 500)
    assert len(name) <= 80 and name.startswith("rollback-v123456-")
    assert name == routing.run_name("rollback", 123456, "x" * 500)
    assert records.error_message('{"errorMessage": "boom", "errorType": "X"}') == "boom"
    assert records.error_message("plain") == "plain"


def test_rejecting_a_package_still_rolling_out_undoes_it() -> None:
    sm = FakeSM({ARN(1): (1, "Approved"), ARN(2): (2, "Rejected")})
    sfn, table = FakeSFN(), FakeTable()
    DeploymentsStore(table).mark_target("fleet", {"arn": ARN(1), "version": 1}, "dep1", "r1")
    table.items[("TARGET#fleet", "RUN#2026-11-20T00:00:00Z#r1")] = {"package_arn": ARN(1), "outcome": "COMPLETED"}
    DeploymentsStore(table).mark_pending("fleet", {"arn": ARN(2), "version": 2}, "dep2", "r2")
    out = handle(event(2, "Rejected"), sm, sfn, table)
    assert out["action"] == "started" and out["request"]["package_arn"] == ARN(1)


def test_a_finished_deployment_is_no_longer_pending() -> None:
    sm = FakeSM({ARN(1): (1, "Approved"), ARN(2): (2, "Rejected")})
    sfn, table = FakeSFN(), FakeTable()
    DeploymentsStore(table).mark_target("fleet", {"arn": ARN(1), "version": 1}, "dep1", "r1")
    DeploymentsStore(table).mark_pending("fleet", {"arn": ARN(2), "version": 2}, "dep2", "r2")
    state = {
        "package": {"arn": ARN(2), "version": 2},
        "thing_group": "fleet",
        "run_id": "r2",
        "deployment": {"deployment_id": "dep2"},
        "outcomes": {"devices": {"d1": {"status": "FAILED", "reason": "rolled back"}}},
    }
    records.record(DeploymentsStore(table), state, "FAILED")
    assert DeploymentsStore(table).current_target("fleet", "PENDING") is None
    assert handle(event(2, "Rejected"), sm, sfn, table)["action"] == "ignored"
    DeploymentsStore(table).mark_pending("fleet", {"arn": ARN(2), "version": 2}, "dep3", "r3")
    DeploymentsStore(table).clear_pending("fleet", "dep2")  # an older run never clears a newer pending deployment
    assert DeploymentsStore(table).current_target("fleet", "PENDING")["deployment_id"] == "dep3"
