"""The Greengrass v2 stand-in's service behaviour, driven with requests like botocore sends them."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest

from loupe.greengrass import greengrass_digest
from loupe_local.standins.base import AwsRequest
from loupe_local.standins.greengrass.service import GreengrassStandIn


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        return {"Body": io.BytesIO(self.objects[f"{Bucket}/{Key}"])}


class FakeIot:
    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = groups

    def describe_thing_group(self, thingGroupName: str) -> dict[str, Any]:  # noqa: N803
        if thingGroupName not in self.groups:
            raise KeyError(thingGroupName)
        return {}

    def list_things_in_thing_group(self, thingGroupName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        return {"things": self.groups[thingGroupName]}

    def list_thing_groups_for_thing(self, thingName: str) -> dict[str, Any]:  # noqa: N803
        return {"thingGroups": [{"groupName": g} for g, things in self.groups.items() if thingName in things]}


class FakeRuntime:
    region = "us-east-1"

    def __init__(self, s3: FakeS3, iot: FakeIot) -> None:
        self.clients = {"s3": s3, "iot": iot}

    def client(self, name: str) -> Any:
        return self.clients[name]


def call(gg: GreengrassStandIn, method: str, path: str, body: Any = None, query: dict | None = None) -> tuple[int, Any]:
    req = AwsRequest(method, path, {k: [v] for k, v in (query or {}).items()}, {}, json.dumps(body or {}).encode())
    assert gg.handles(req)
    status, _, data = gg.handle(req).encode()
    return status, json.loads(data)


GROUP = "arn:aws:iot:us-east-1:123456789012:thinggroup/fleet"


@pytest.fixture
def gg() -> GreengrassStandIn:
    s = GreengrassStandIn()
    s.attach(FakeRuntime(FakeS3({"b/m.zip": b"model-zip"}), FakeIot({"fleet": ["d1", "d2", "d3", "d4"]})))
    return s


def create(gg: GreengrassStandIn, version: str, digest: str | None = None) -> tuple[int, Any]:
    art: dict[str, Any] = {"URI": "s3://b/m.zip", "Unarchive": "ZIP"}
    if digest:
        art["Digest"] = digest
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.loupe.model",
        "ComponentVersion": version,
        "Manifests": [{"Platform": {"os": "linux"}, "Artifacts": [art]}],
    }
    return call(
        gg,
        "POST",
        "/greengrass/v2/createComponentVersion",
        {"inlineRecipe": base64.b64encode(json.dumps(recipe).encode()).decode()},
    )


def test_component_versions_get_artifact_digests_and_are_never_overwritten(gg: GreengrassStandIn) -> None:
    status, out = create(gg, "1.1.0")
    assert status == 201 and out["status"]["componentState"] == "DEPLOYABLE"
    _, got = call(gg, "GET", f"/greengrass/v2/components/{out['arn']}", query={"recipeOutputFormat": "JSON"})
    art = json.loads(base64.b64decode(got["recipe"]))["Manifests"][0]["Artifacts"][0]
    assert art["Digest"] == greengrass_digest(b"model-zip") and art["Algorithm"] == "SHA-256"
    status, out = create(gg, "1.1.0")
    assert status == 409 and out["__type"] == "ConflictException"
    status, out = create(gg, "1.2.0", digest=greengrass_digest(b"other bytes"))
    assert status == 201 and out["status"]["componentState"] == "FAILED"
    assert "does not match" in out["status"]["message"]
    _, listed = call(gg, "GET", "/greengrass/v2/components")
    assert listed["components"][0]["latestVersion"]["componentVersion"] == "1.2.0"
    status, _ = call(gg, "GET", "/greengrass/v2/components/arn:aws:greengrass:us-east-1:1:components:nope/metadata")
    assert status == 404


def deploy(gg: GreengrassStandIn, version: str, token: str | None = None, **job: Any) -> tuple[int, Any]:
    body: dict[str, Any] = {
        "targetArn": GROUP,
        "components": {"com.loupe.model": {"componentVersion": version}},
        "iotJobConfiguration": job,
    }
    if token:
        body["clientToken"] = token
    return call(gg, "POST", "/greengrass/v2/deployments", body)


def sync(gg: GreengrassStandIn, thing: str) -> Any:
    return call(gg, "POST", f"/greengrass/v2/local/coreDevices/{thing}/sync", {"installed": []})[1]["deployment"]


def report(gg: GreengrassStandIn, thing: str, dep_id: str, status: str, reason: str = "") -> None:
    call(
        gg,
        "POST",
        f"/greengrass/v2/local/coreDevices/{thing}/deployments/{dep_id}/status",
        {"status": status, "reason": reason},
    )


def effective(gg: GreengrassStandIn, thing: str) -> dict[str, str]:
    _, out = call(gg, "GET", f"/greengrass/v2/coreDevices/{thing}/effectiveDeployments")
    return {e["deploymentId"]: e["coreDeviceExecutionStatus"] for e in out["effectiveDeployments"]}


def test_deployments_are_idempotent_per_client_token_and_refuse_unknown_versions(gg: GreengrassStandIn) -> None:
    create(gg, "1.1.0")
    first = deploy(gg, "1.1.0", token="t1")[1]["deploymentId"]
    assert deploy(gg, "1.1.0", token="t1")[1]["deploymentId"] == first
    status, out = deploy(gg, "9.9.9")
    assert status == 400 and "does not exist" in out["message"]
    create(gg, "1.2.0", digest="bad")
    status, out = deploy(gg, "1.2.0")
    assert status == 400 and "FAILED" in out["message"]


def test_rollout_releases_batches_and_abort_cancels_the_rest(gg: GreengrassStandIn) -> None:
    create(gg, "1.1.0")
    rate = {"baseRatePerMinute": 1, "incrementFactor": 2, "rateIncreaseCriteria": {"numberOfSucceededThings": 1}}
    abort = {
        "criteriaList": [
            {"failureType": "ALL", "action": "CANCEL", "thresholdPercentage": 50, "minNumberOfExecutedThings": 2}
        ]
    }
    dep_id = deploy(gg, "1.1.0", jobExecutionsRolloutConfig={"exponentialRate": rate}, abortConfig=abort)[1][
        "deploymentId"
    ]
    assert sync(gg, "d1")["deploymentId"] == dep_id
    assert sync(gg, "d2") is None  # one device per batch at first
    report(gg, "d1", dep_id, "IN_PROGRESS")
    report(gg, "d1", dep_id, "SUCCEEDED")
    assert sync(gg, "d2")["deploymentId"] == dep_id and sync(gg, "d3")["deploymentId"] == dep_id  # batch of 2
    report(gg, "d2", dep_id, "FAILED", "component broken")
    report(gg, "d3", dep_id, "FAILED", "component broken")  # 2 of 3 finished failed: abort
    assert sync(gg, "d4") is None
    assert dep_id not in effective(gg, "d4")  # the canceled job never reached d4: it has no execution of it
    assert effective(gg, "d1")[dep_id] == "SUCCEEDED"
    _, described = call(gg, "GET", f"/jobs/{deployed_job(gg, dep_id)}")
    assert "processingTargets" not in described["job"]["jobProcessDetails"]  # canceled: no longer rolling out


def deployed_job(gg: GreengrassStandIn, dep_id: str) -> str:
    return str(call(gg, "GET", f"/greengrass/v2/deployments/{dep_id}")[1]["iotJobId"])


def listed_executions(gg: GreengrassStandIn, job: str) -> dict[str, str]:
    _, page = call(gg, "GET", f"/jobs/{job}/things")
    return {r["thingArn"].rsplit("/", 1)[-1]: r["jobExecutionSummary"]["status"] for r in page["executionSummaries"]}


def test_a_target_has_no_job_execution_until_the_rollout_reaches_it(gg: GreengrassStandIn) -> None:
    """IoT Jobs create a target's execution when the rollout reaches it; DescribeJob's processingTargets stays set
    until every target has one (IoT API reference, JobProcessDetails)."""
    create(gg, "1.1.0")
    rate = {"baseRatePerMinute": 1, "incrementFactor": 2, "rateIncreaseCriteria": {"numberOfSucceededThings": 1}}
    created = deploy(gg, "1.1.0", jobExecutionsRolloutConfig={"exponentialRate": rate})[1]
    dep_id, job = created["deploymentId"], created["iotJobId"]
    assert listed_executions(gg, job) == {"d1": "QUEUED"}
    _, described = call(gg, "GET", f"/jobs/{job}")
    details = described["job"]["jobProcessDetails"]
    assert details["processingTargets"] == [GROUP] and details["numberOfQueuedThings"] == 1
    status, refused = call(
        gg, "POST", f"/greengrass/v2/local/coreDevices/d4/deployments/{dep_id}/status", {"status": "IN_PROGRESS"}
    )
    assert status == 404  # no execution to update before the rollout reaches d4
    report(gg, "d1", dep_id, "IN_PROGRESS")
    report(gg, "d1", dep_id, "SUCCEEDED")
    assert listed_executions(gg, job) == {"d1": "SUCCEEDED", "d2": "QUEUED", "d3": "QUEUED"}  # the batch of 2
    for thing in ("d2", "d3"):
        report(gg, thing, dep_id, "IN_PROGRESS")
        report(gg, thing, dep_id, "SUCCEEDED")
    assert listed_executions(gg, job) == {"d1": "SUCCEEDED", "d2": "SUCCEEDED", "d3": "SUCCEEDED", "d4": "QUEUED"}
    _, described = call(gg, "GET", f"/jobs/{job}")
    assert "processingTargets" not in described["job"]["jobProcessDetails"]  # every target has its execution


def test_a_new_deployment_supersedes_the_previous_one(gg: GreengrassStandIn) -> None:
    create(gg, "1.1.0")
    create(gg, "1.2.0")
    old = deploy(gg, "1.1.0")[1]["deploymentId"]
    new = deploy(gg, "1.2.0")[1]["deploymentId"]
    assert effective(gg, "d1") == {new: "QUEUED", old: "CANCELED"}
    assert sync(gg, "d1")["deploymentId"] == new
    _, got = call(gg, "GET", f"/greengrass/v2/deployments/{old}")
    assert got["deploymentStatus"] == "INACTIVE" and not got["isLatestForTarget"]
    _, listed = call(gg, "GET", "/greengrass/v2/coreDevices", query={"thingGroupArn": GROUP})
    assert [d["coreDeviceThingName"] for d in listed["coreDevices"]] == ["d1"]


def test_each_deployment_is_an_iot_job_whose_executions_page(gg: GreengrassStandIn) -> None:
    create(gg, "1.1.0")
    created = deploy(gg, "1.1.0")[1]
    job = created["iotJobId"]
    report(gg, "d1", created["deploymentId"], "IN_PROGRESS")
    report(gg, "d1", created["deploymentId"], "SUCCEEDED")
    report(gg, "d2", created["deploymentId"], "IN_PROGRESS")
    report(gg, "d2", created["deploymentId"], "FAILED", "broken")
    seen, token, pages = {}, None, 0
    while True:
        status, page = call(
            gg, "GET", f"/jobs/{job}/things", query={"maxResults": "3", **({"nextToken": token} if token else {})}
        )
        assert status == 200
        pages += 1
        for row in page["executionSummaries"]:
            seen[row["thingArn"].rsplit("/", 1)[-1]] = row["jobExecutionSummary"]["status"]
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 2
    assert seen == {"d1": "SUCCEEDED", "d2": "FAILED", "d3": "QUEUED", "d4": "QUEUED"}
    _, failed = call(gg, "GET", f"/jobs/{job}/things", query={"status": "FAILED"})
    assert [r["thingArn"].rsplit("/", 1)[-1] for r in failed["executionSummaries"]] == ["d2"]
    status, refused = call(gg, "GET", f"/jobs/{job}/things", query={"maxResults": "251"})
    assert status == 400 and refused["__type"] == "InvalidRequestException"
    _, described = call(gg, "GET", f"/jobs/{job}")
    details = described["job"]["jobProcessDetails"]
    assert described["job"]["targets"] == [GROUP] and described["job"]["targetSelection"] == "CONTINUOUS"
    assert details["numberOfSucceededThings"] == 1 and details["numberOfQueuedThings"] == 2
    other = AwsRequest("GET", "/jobs/someone-elses-job/things", {}, {}, b"")
    assert not gg.handles(other)  # moto answers the IoT jobs that are not Greengrass deployments
