"""Per-device outcomes of a 1,000-device deployment in the local AWS: the Greengrass stand-in runs the deployment
as an IoT job (one execution per device) like Greengrass, the workflow pages through the job's executions and
batches the "what do you serve" reads, and keeps the per-device results in the deployments table, not in the
state machine's payload (256 KB). The numbers of calls and the payload size are printed (``-s``) and bounded."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import boto3
import pytest

from loupe.deployment.outcomes import device_outcomes, job_outcomes, overall
from loupe.deployment.packages import DEVICES_IN_STATE
from loupe.deployment.store import DeploymentsStore
from loupe.greengrass import create_component
from loupe_local.local_auth import sign_request

pytestmark = pytest.mark.integration

FLEET = 1000
FAILED, SILENT, NOT_SERVING = 7, 3, 5


def counted(client: Any, calls: Counter) -> Any:
    client.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
    return client


def device_report(rt: Any, thing: str, deployment_id: str, status: str) -> None:
    import urllib.request

    url = f"{rt.endpoint}/greengrass/v2/local/coreDevices/{thing}/deployments/{deployment_id}/status"
    data = json.dumps({"status": status, "reason": "install failed" if status == "FAILED" else ""}).encode()
    headers = sign_request(
        rt.credentials, "POST", url, "greengrass", rt.region, data, {"Content-Type": "application/json"}
    )
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310 - the local endpoint
    with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310
        assert json.loads(resp.read())["accepted"]


def test_a_thousand_devices_cost_a_few_paged_calls_and_a_small_state(local_aws: Any) -> None:
    rt = local_aws
    iot, gg = rt.client("iot"), rt.client("greengrassv2")
    group = f"scale-{uuid.uuid4().hex[:6]}"
    group_arn = iot.create_thing_group(thingGroupName=group)["thingGroupArn"]
    things = [f"{group}-dev-{i:04d}" for i in range(FLEET)]
    for thing in things:
        iot.create_thing(thingName=thing)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    component = f"com.example.scale{uuid.uuid4().hex[:6]}"
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": component,
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": "sleep 1"}}],
    }
    create_component(gg, recipe)
    created = gg.create_deployment(targetArn=group_arn, components={component: {"componentVersion": "1.0.0"}})
    assert created["iotJobId"]
    # the simulated fleet: most succeed, a few fail, a few never answer, a few serve the old model
    for i, thing in enumerate(things):
        if i < FLEET - SILENT:
            device_report(rt, thing, created["deploymentId"], "IN_PROGRESS")
            device_report(rt, thing, created["deploymentId"], "FAILED" if i < FAILED else "SUCCEEDED")
    table_name = rt.physical("DeploymentsTable")
    creds = rt.credentials
    session = boto3.Session(
        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key, region_name=rt.region
    )
    ddb = session.resource("dynamodb", endpoint_url=rt.endpoint)
    table = ddb.Table(table_name)
    succeeded = things[FAILED : FLEET - SILENT]
    with table.batch_writer() as batch:  # what the health rule records: the last few still serve v1
        for i, thing in enumerate(succeeded):
            version = "v1" if i >= len(succeeded) - NOT_SERVING else "v2"
            batch.put_item(Item={"pk": f"DEVICE#{thing}", "sk": "SERVING", "model_version": version})

    calls: Counter = Counter()
    # clients of their own: the counters must see only the calls the outcome code makes
    iot_c, gg_c = counted(rt.own_client("iot"), calls), counted(rt.own_client("greengrassv2"), calls)
    counted(ddb.meta.client, calls)
    deployment = {"deployment_id": created["deploymentId"], "iot_job_id": created["iotJobId"], "model_version": "v2"}
    state = {"thing_group": group, "devices": [], "device_count": FLEET, "deployment": deployment}
    store = DeploymentsStore(table)

    running = job_outcomes(iot_c, gg_c, deployment, deadline=2e9, store=store)
    poll_calls = dict(calls)
    poll_bytes = len(json.dumps({**state, "outcomes": running}))
    assert not running["done"] and "devices" not in running
    assert running["counts"] == {"COMPLETED": FLEET - FAILED - SILENT - NOT_SERVING, "FAILED": FAILED, "PENDING": 8}
    # 1000/250 and 990/100, not 1000; DescribeJob: whether the rollout has reached every device
    assert poll_calls == {"DescribeJob": 1, "ListJobExecutionsForJob": 4, "BatchGetItem": 10}

    calls.clear()
    final = job_outcomes(iot_c, gg_c, deployment, deadline=0.0, store=store)
    final_bytes = len(json.dumps({**state, "outcomes": final}))
    assert final["done"] and final["devices_total"] == FLEET
    assert final["counts"]["TIMED_OUT"] == SILENT and final["counts"]["NOT_SERVING"] == NOT_SERVING
    assert len(final["devices"]) == DEVICES_IN_STATE
    shown = {d["status"] for d in final["devices"].values()}
    assert {"FAILED", "TIMED_OUT", "NOT_SERVING"} <= shown  # the ones that need a look come first
    assert all(final["devices"][t]["reason"] == "install failed" for t in things[:FAILED])
    assert calls["ListEffectiveDeployments"] == FAILED  # reasons only for the failed devices, once
    stored = table.query(
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": f"DEPLOYMENT#{created['deploymentId']}"},
        Select="COUNT",
    )
    count, start = stored["Count"], stored.get("LastEvaluatedKey")
    while start:
        more = table.query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": f"DEPLOYMENT#{created['deploymentId']}"},
            Select="COUNT",
            ExclusiveStartKey=start,
        )
        count, start = count + more["Count"], more.get("LastEvaluatedKey")
    assert count == FLEET  # every device's outcome is in the deployments table

    calls.clear()  # the per-device way, for comparison: one ListEffectiveDeployments per device per poll
    device_outcomes(gg_c, created["deploymentId"], things, deadline=2e9)
    per_device_calls = calls["ListEffectiveDeployments"]
    print(
        f"\n{FLEET} devices: a poll makes {sum(poll_calls.values())} calls {poll_calls} "
        f"(per-device polling: {per_device_calls}); state {poll_bytes} B while rolling out, {final_bytes} B at "
        f"the end (limit 262144 B)"
    )
    assert per_device_calls == FLEET
    assert poll_bytes < 4_000 and final_bytes < 16_000


def test_a_rollout_is_not_done_before_it_has_reached_every_device(local_aws: Any) -> None:
    """The job creates a device's execution only when its rollout reaches it: one success and one failure in the
    first batch of two (the rate grows after two successes) leave three of five devices without an execution until
    the next rollout minute. The executions listed so far are all final; the run is still not done."""
    rt = local_aws
    iot, gg = rt.client("iot"), rt.client("greengrassv2")
    group = f"rollout-{uuid.uuid4().hex[:6]}"
    group_arn = iot.create_thing_group(thingGroupName=group)["thingGroupArn"]
    things = [f"{group}-dev-{i}" for i in range(5)]
    for thing in things:
        iot.create_thing(thingName=thing)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    component = f"com.example.rollout{uuid.uuid4().hex[:6]}"
    create_component(
        gg,
        {
            "RecipeFormatVersion": "2020-01-25",
            "ComponentName": component,
            "ComponentVersion": "1.0.0",
            "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": "sleep 1"}}],
        },
    )
    rate = {"baseRatePerMinute": 2, "incrementFactor": 2, "rateIncreaseCriteria": {"numberOfSucceededThings": 2}}
    created = gg.create_deployment(
        targetArn=group_arn,
        components={component: {"componentVersion": "1.0.0"}},
        iotJobConfiguration={"jobExecutionsRolloutConfig": {"exponentialRate": rate}},
    )
    deployment = {"deployment_id": created["deploymentId"], "iot_job_id": created["iotJobId"], "model_version": ""}
    first = job_outcomes(iot, gg, deployment, deadline=2e9, expected=len(things))
    assert first == {**first, "done": False, "rolling_out": True, "counts": {"PENDING": 2}}
    device_report(rt, things[0], created["deploymentId"], "IN_PROGRESS")
    device_report(rt, things[0], created["deploymentId"], "SUCCEEDED")
    device_report(rt, things[1], created["deploymentId"], "IN_PROGRESS")
    device_report(rt, things[1], created["deploymentId"], "FAILED")

    early = job_outcomes(iot, gg, deployment, deadline=2e9, expected=len(things))
    assert early["counts"] == {"COMPLETED": 1, "FAILED": 1}  # every execution listed so far is final ...
    assert not early["done"] and early["rolling_out"]  # ... but three devices have not been reached

    late = job_outcomes(iot, gg, deployment, deadline=0.0, expected=len(things))
    assert late["done"] and late["counts"] == {"COMPLETED": 1, "FAILED": 1, "NOT_REACHED": 3}
    outcome, reason = overall(late)
    assert outcome == "PARTIAL" and "3 not_reached" in reason
