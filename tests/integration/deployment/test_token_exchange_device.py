"""A local core device acts under the stack's token exchange role (template.yaml GreengrassTokenExchangeRole), with
IAM enforced: it gets its credentials from the IoT credentials provider with its own certificate, downloads its
components' artifacts with them (GetBucketLocation, GetObject), and serves them to the components that depend on
``aws.greengrass.TokenExchangeService`` through its token exchange service, where the components' boto3 finds them
by itself. The role's ``${credentials-iot:ThingName}`` fence holds: an upload under the device's own thing prefix is
allowed, one under another thing's is AccessDenied. A component without the dependency gets no credentials at all.
A token exchange role without s3:GetBucketLocation fails the deployment with S3_GET_BUCKET_LOCATION_ACCESS_DENIED.

One real device process (``loupe_local.devices.fleet``) in a thing group of this module's own (not the stack's fleet).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.iam_gate import usage
from support.waiting import wait_until

from loupe.greengrass import publish_component
from loupe_local.devices.fleet import DeviceFleet, device_identity, device_root

pytestmark = pytest.mark.integration

PROBE = """\
import json, os, sys
import boto3
from loupe_edge.transport import S3Uploader, TransportError

names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
         "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
out = {"env": sorted(n for n in names if os.environ.get(n))}
creds = boto3.Session().get_credentials()
out["method"] = creds.method if creds is not None else None
if creds is not None:
    uploader = S3Uploader()
    for label, thing in (("own", os.environ["PROBE_THING"]), ("other", os.environ["PROBE_OTHER"])):
        try:
            uploader.put(os.environ["PROBE_BUCKET"], "raw/feedback/%s/probe-%s.png" % (thing, os.environ["PROBE_RUN"]),
                         b"frame", "image/png", {})
            out[label] = "uploaded"
        except TransportError as exc:
            out[label] = str(exc)
with open("probe.json.tmp", "w") as f:
    json.dump(out, f)
os.replace("probe.json.tmp", "probe.json")
"""


def probe_recipe(name: str, version: str, bucket: str, with_tes: bool) -> dict[str, Any]:
    deps = {"aws.greengrass.TokenExchangeService": {"VersionRequirement": ">=2.0.0 <3.0.0"}} if with_tes else {}
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDependencies": deps,
        "ComponentConfiguration": {"DefaultConfiguration": {"bucket": "", "other": "", "run": ""}},
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Lifecycle": {
                    "Setenv": {
                        "PROBE_THING": "{iot:thingName}",
                        "PROBE_BUCKET": "{configuration:/bucket}",
                        "PROBE_OTHER": "{configuration:/other}",
                        "PROBE_RUN": "{configuration:/run}",
                    },
                    "Run": "python {artifacts:path}/probe.py",
                },
                "Artifacts": [{"Uri": f"s3://{bucket}/edge/artifacts/{name}/{version}/probe.py"}],
            }
        ],
    }


@pytest.fixture(scope="module")
def rt(local_aws: Any) -> Iterator[Any]:
    before = local_aws.iam_mode
    local_aws.set_iam("enforce")
    try:
        yield local_aws
    finally:
        local_aws.set_iam(before)


@pytest.fixture(scope="module")
def device(rt: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:6]
    group = f"tes-devices-{suffix}"
    group_arn = rt.client("iot").create_thing_group(thingGroupName=group)["thingGroupArn"]
    role_alias, device_policy = device_identity(rt.resources)
    fleet = DeviceFleet(
        rt.state_dir,
        rt.endpoint,
        group,
        rt.region,
        rt.mqtt,
        poll_seconds=0.5,
        settle_seconds=1.0,
        ack_seconds=2.0,
        prefix=f"loupe-device-tes{suffix}",
        credentials=rt.credentials,
        role_alias=role_alias,
        device_policy=device_policy,
    )
    thing = fleet.names(1)[0]
    fleet.start_device(thing)
    try:
        fleet.wait_registered([thing])
        yield {"thing": thing, "group_arn": group_arn, "suffix": suffix, "root": device_root(rt.state_dir, thing)}
    finally:
        fleet.stop()


def deploy(rt: Any, device: dict[str, Any], components: dict[str, str], run: str) -> dict[str, Any]:
    """Deploy ``components`` (name -> version) to the module's group; the device's execution once it has ended."""
    gg = rt.client("greengrassv2")
    config = {"bucket": rt.physical("RawBucket"), "other": f"loupe-device-someone-else-{run}", "run": run}
    created = gg.create_deployment(
        targetArn=device["group_arn"],
        deploymentName=f"tes-{run}",
        components={
            name: {"componentVersion": version, "configurationUpdate": {"merge": json.dumps(config)}}
            for name, version in components.items()
        },
    )

    def ended() -> dict[str, Any] | None:
        for dep in gg.list_effective_deployments(coreDeviceThingName=device["thing"])["effectiveDeployments"]:
            if dep["deploymentId"] == created["deploymentId"] and dep["coreDeviceExecutionStatus"] in (
                "SUCCEEDED",
                "FAILED",
                "COMPLETED",
            ):
                return dep
        return None

    execution = wait_until(ended, 90, interval=0.5)
    assert execution, f"the device did not finish deployment {created['deploymentId']}"
    return execution


def publish(rt: Any, name: str, version: str, with_tes: bool) -> None:
    bucket = rt.physical("ArtifactBucket")
    recipe = probe_recipe(name, version, bucket, with_tes)
    publish_component(rt.client("greengrassv2"), rt.client("s3"), bucket, recipe, {"probe.py": PROBE.encode()})


def probe_result(device: dict[str, Any], name: str) -> dict[str, Any]:
    path = Path(device["root"]) / "work" / name / "probe.json"
    found = wait_until(lambda: json.loads(path.read_text()) if path.is_file() else None, 30)
    assert found, f"{name} wrote no probe.json (see {device['root']}/logs/{name}.log)"
    return found


@pytest.mark.iam_would_deny  # the upload under another thing's prefix is refused on purpose
def test_the_device_and_its_component_act_as_the_token_exchange_role(rt: Any, device: dict[str, Any]) -> None:
    with_tes, without = f"com.loupe.tesprobe{device['suffix']}", f"com.loupe.noprobe{device['suffix']}"
    publish(rt, with_tes, "1.0.0", with_tes=True)
    publish(rt, without, "1.0.0", with_tes=False)
    execution = deploy(rt, device, {with_tes: "1.0.0", without: "1.0.0"}, "a")
    assert execution["coreDeviceExecutionStatus"] == "SUCCEEDED", execution

    served = probe_result(device, with_tes)
    # boto3's container provider: the device's token exchange service, not a key in the environment
    assert served["env"] == ["AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    assert served["method"] == "container-role"
    assert served["own"] == "uploaded"
    assert "AccessDenied" in served["other"]
    unserved = probe_result(device, without)
    assert unserved == {"env": [], "method": None}

    role = rt.physical("GreengrassTokenExchangeRole")
    thing = device["thing"]
    mine = [r for r in usage(rt) if r["role"] == role and f"/{with_tes}/" in json.dumps(r["resources"])]
    assert {(r["action"], r["decision"]) for r in mine} >= {("s3:GetObject", "Allow")}
    located = [r for r in usage(rt) if r["role"] == role and r["action"] == "s3:GetBucketLocation"]
    assert located and all(r["decision"] == "Allow" for r in located)
    uploads = {
        r["resources"][0].split("/raw/feedback/", 1)[1].split("/", 1)[0]: r["decision"]
        for r in usage(rt)
        if r["role"] == role and r["action"] == "s3:PutObject" and "probe-a.png" in r["resources"][0]
    }
    assert uploads == {thing: "Allow", "loupe-device-someone-else-a": "ImplicitDeny"}
    assert rt.client("s3").get_object(Bucket=rt.physical("RawBucket"), Key=f"raw/feedback/{thing}/probe-a.png")


@pytest.mark.iam_would_deny  # the role is stripped of s3:GetBucketLocation on purpose
def test_a_token_exchange_role_without_get_bucket_location_fails_the_deployment(
    rt: Any, device: dict[str, Any]
) -> None:
    role_name = rt.physical("GreengrassTokenExchangeRole")
    role_arn = rt.arn("GreengrassTokenExchangeRole")
    iam = rt.client("iam")
    original = iam.get_role_policy(RoleName=role_name, PolicyName="loupe-edge-devices")["PolicyDocument"]
    stripped = copy.deepcopy(original)
    stripped["Statement"] = [s for s in stripped["Statement"] if s.get("Sid") != "LocateComponentArtifactBucket"]
    assert len(stripped["Statement"]) == len(original["Statement"]) - 1

    def put(document: dict[str, Any]) -> None:
        iam.put_role_policy(RoleName=role_name, PolicyName="loupe-edge-devices", PolicyDocument=json.dumps(document))
        rt.role_policies.add(role_name, role_arn, "loupe-edge-devices", document)

    name = f"com.loupe.tesprobe{device['suffix']}"
    publish(rt, name, "1.0.1", with_tes=True)  # a new artifact: the device must download it
    put(stripped)
    try:
        execution = deploy(rt, device, {name: "1.0.1"}, "b")
    finally:
        put(original)
    assert execution["coreDeviceExecutionStatus"] == "FAILED", execution
    assert "S3_GET_BUCKET_LOCATION_ACCESS_DENIED" in execution["reason"]
    assert "ARTIFACT_DOWNLOAD_ERROR" in execution["statusDetails"]["errorStack"]
