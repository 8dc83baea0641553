"""Disk spooling in the fleet's deployments: aws.greengrass.DiskSpooler + the nucleus' mqtt.spooler setting, at a
nucleus version the workflow never picks by itself. Driven against the local Greengrass stand-in (which knows
the AWS-provided components) through a boto3-shaped adapter."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest

from loupe import greengrass as gg_mod
from loupe import settings
from loupe.deployment import document, records, revision
from loupe_local.standins.base import AwsRequest
from loupe_local.standins.greengrass.service import GreengrassStandIn

REGION = "us-east-1"
GROUP_ARN = f"arn:aws:iot:{REGION}:123456789012:thinggroup/fleet"
SPOOLER = {"storageType": "Disk", "pluginName": "aws.greengrass.DiskSpooler"}
MODEL_VALUES = {
    "modelVersion": "3",
    "modelPackageArn": f"arn:aws:sagemaker:{REGION}:123456789012:model-package/loupe-models/3",
    "modelSha256": "ab" * 32,
    "modelInt8Sha256": "",
}
MODEL_DEFAULTS = {"com.loupe.model": {"ComponentConfiguration": {"DefaultConfiguration": MODEL_VALUES}}}


class _Iot:
    def describe_thing_group(self, thingGroupName: str) -> dict[str, Any]:  # noqa: N803
        return {"thingGroupArn": GROUP_ARN}

    def list_things_in_thing_group(self, thingGroupName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        return {"things": ["d1"]}


class _Runtime:
    region = REGION

    def client(self, name: str) -> Any:
        return _Iot()


class StandInClient:
    """The greengrassv2 calls the domain code makes, sent to the stand-in as REST requests."""

    def __init__(self, standin: GreengrassStandIn) -> None:
        self.s = standin

    def _call(self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None) -> dict[str, Any]:
        req = AwsRequest(
            method,
            "/greengrass/v2/" + path,
            {k: [v] for k, v in (query or {}).items()},
            {},
            json.dumps(body or {}).encode(),
        )
        status, _, data = self.s.handle(req).encode()
        out = json.loads(data)
        if status >= 300:
            raise RuntimeError(f"{status} {out}")
        return out

    def list_components(self, scope: str = "PRIVATE", **_: Any) -> dict[str, Any]:
        return self._call("GET", "components", {"scope": scope})

    def list_component_versions(self, arn: str, **_: Any) -> dict[str, Any]:
        return self._call("GET", f"components/{quote(arn)}/versions")

    def get_component(self, arn: str, recipeOutputFormat: str = "JSON") -> dict[str, Any]:  # noqa: N803
        out = self._call("GET", f"components/{quote(arn)}", {"recipeOutputFormat": recipeOutputFormat})
        return {**out, "recipe": base64.b64decode(out["recipe"])}

    def list_deployments(self, **query: Any) -> dict[str, Any]:
        return self._call("GET", "deployments", {k: str(v) for k, v in query.items()})

    def get_deployment(self, deploymentId: str) -> dict[str, Any]:  # noqa: N803
        return self._call("GET", f"deployments/{deploymentId}")

    def create_deployment(self, **doc: Any) -> dict[str, Any]:
        return self._call("POST", "deployments", body=doc)

    def list_core_devices(self, **query: Any) -> dict[str, Any]:
        return self._call("GET", "coreDevices", {k: str(v) for k, v in query.items()})

    def get_core_device(self, coreDeviceThingName: str) -> dict[str, Any]:  # noqa: N803
        return self._call("GET", f"coreDevices/{coreDeviceThingName}")


@pytest.fixture
def gg() -> StandInClient:
    s = GreengrassStandIn()
    s.attach(_Runtime())
    for name, version in (("com.loupe.model", "1.3.0"), ("com.loupe.inference", "1.0.0"), ("com.acme.sensor", "2.0.0")):
        s.components.private.setdefault(name, {})[version] = {
            "arn": f"arn:aws:greengrass:{REGION}:123456789012:components:{name}:versions:{version}",
            "componentName": name,
            "componentVersion": version,
            "creationTimestamp": 1.0,
            "publisher": "",
            "description": "",
            "recipe": {"ComponentName": name, "ComponentVersion": version, **MODEL_DEFAULTS.get(name, {})},
            "status": {"componentState": "DEPLOYABLE", "message": "", "errors": {}},
            "tags": {},
        }
    return StandInClient(s)


def test_version_requirements_are_read_like_recipes_write_them() -> None:
    assert gg_mod.version_satisfies("2.12.6", ">=2.11.0 <2.16.0")
    assert not gg_mod.version_satisfies("2.16.0", ">=2.11.0 <2.16.0")
    assert not gg_mod.version_satisfies("2.10.3", ">=2.11.0 <2.16.0")
    assert gg_mod.version_satisfies("2.14.0", "2.14.0") and not gg_mod.version_satisfies("2.14.1", "=2.14.0")
    assert gg_mod.version_satisfies("1.0.0", "")


def test_the_stand_in_lists_aws_components_only_in_the_public_scope(gg: StandInClient) -> None:
    private = {c["componentName"] for c in gg.list_components()["components"]}
    public = {c["componentName"]: c for c in gg.list_components("PUBLIC")["components"]}
    assert "aws.greengrass.DiskSpooler" not in private and "com.loupe.model" in private
    assert set(public) == {"aws.greengrass.Nucleus", "aws.greengrass.DiskSpooler"}
    assert (
        public["aws.greengrass.DiskSpooler"]["arn"]
        == f"arn:aws:greengrass:{REGION}:aws:components:aws.greengrass.DiskSpooler"
    )
    recipe = gg_mod.get_recipe(gg, gg_mod.public_component_arn(REGION, "aws.greengrass.DiskSpooler", "1.0.5"))
    assert recipe["ComponentType"] == "aws.greengrass.plugin"
    assert gg_mod.nucleus_requirement(recipe) == ">=2.11.0 <2.15.0"


@pytest.mark.parametrize(
    ("nucleus", "spooler"), [("2.12.6", "1.0.6"), ("2.14.9", "1.0.6"), ("2.15.2", "1.0.6"), ("2.16.0", None)]
)
def test_the_newest_disk_spooler_that_runs_in_the_nucleus_is_chosen(
    gg: StandInClient, nucleus: str, spooler: str | None
) -> None:
    assert revision.disk_spooler_version(gg, REGION, nucleus) == spooler


def test_the_nucleus_the_target_runs_gets_disk_spooling_and_keeps_its_configuration(gg: StandInClient) -> None:
    components = {
        "aws.greengrass.Nucleus": {
            "componentVersion": "2.12.6",
            "configurationUpdate": {"reset": ["/logging"], "merge": '{"mqtt": {"port": 443}, "a": 1}'},
        },
        "com.loupe.model": {"componentVersion": "1.3.0"},
    }
    out, spool = revision.plan_disk_spooling(gg, REGION, components, "")
    nucleus = out["aws.greengrass.Nucleus"]
    assert nucleus["componentVersion"] == "2.12.6"  # never another version: that would update the nucleus
    assert nucleus["configurationUpdate"]["reset"] == ["/logging"]
    assert json.loads(nucleus["configurationUpdate"]["merge"]) == {"mqtt": {"port": 443, "spooler": SPOOLER}, "a": 1}
    assert out["aws.greengrass.DiskSpooler"] == {"componentVersion": "1.0.6"}
    assert out["com.loupe.model"] == components["com.loupe.model"]
    assert spool == {"storage": "Disk", "nucleus": "2.12.6", "disk_spooler": "1.0.6", "reason": ""}
    assert "spooler" not in components["aws.greengrass.Nucleus"]["configurationUpdate"]["merge"]  # input untouched


def test_without_a_known_nucleus_version_nothing_is_guessed_and_the_reason_says_memory(gg: StandInClient) -> None:
    components = {"com.loupe.model": {"componentVersion": "1.3.0"}}
    out, spool = revision.plan_disk_spooling(gg, REGION, components, "")
    assert out == components
    assert spool["storage"] == "Memory" and "NucleusVersion" in spool["reason"] and "memory" in spool["reason"]


def test_a_nucleus_older_than_2_11_cannot_spool_on_disk(gg: StandInClient) -> None:
    components = {"aws.greengrass.Nucleus": {"componentVersion": "2.10.3"}}
    out, spool = revision.plan_disk_spooling(gg, REGION, components, "")
    assert out == components and spool["storage"] == "Memory" and "2.11.0" in spool["reason"]


def test_the_operator_s_version_wins_and_a_kept_spooler_that_does_not_fit_is_replaced(gg: StandInClient) -> None:
    components = {
        "aws.greengrass.Nucleus": {"componentVersion": "2.12.6"},
        "aws.greengrass.DiskSpooler": {"componentVersion": "1.0.5"},
    }
    out, spool = revision.plan_disk_spooling(gg, REGION, components, "2.15.1")
    assert out["aws.greengrass.Nucleus"]["componentVersion"] == "2.15.1"
    assert out["aws.greengrass.DiskSpooler"]["componentVersion"] == "1.0.6"  # 1.0.5 needs a nucleus < 2.15.0
    assert spool["storage"] == "Disk" and "update their nucleus" in spool["reason"]
    kept, _ = revision.plan_disk_spooling(gg, REGION, components, "")
    assert kept["aws.greengrass.DiskSpooler"]["componentVersion"] == "1.0.5"  # it fits 2.12.6: left as it is


def _request() -> dict[str, Any]:
    return {
        "package": {
            "arn": "arn:p/3",
            "group": "g",
            "version": 3,
            "status": "Approved",
            "model_data_url": "s3://b/k",
            "digests": {},
        },
        "model": {"name": "com.loupe.model", "version": "1.3.0", "model_version": "3"},
        "inference": {"name": "com.loupe.inference", "version": "1.0.0"},
        "run_id": "r1",
        "thing_group": "fleet",
    }


def test_the_workflow_revises_the_factory_deployment_with_disk_spooling(gg: StandInClient) -> None:
    factory = {
        "aws.greengrass.Nucleus": {"componentVersion": "2.12.6", "configurationUpdate": {"merge": '{"a": 1}'}},
        "com.acme.sensor": {"componentVersion": "2.0.0"},
    }
    gg.create_deployment(targetArn=GROUP_ARN, components=factory)
    cfg = settings.Settings(artifact_bucket="art", raw_bucket="raw", thing_group_name="fleet", deployments_table="t")
    out = document.start_deployment(gg, _Iot(), _request(), cfg, 60, now=1.0)
    sent = gg.get_deployment(out["deployment_id"])["components"]
    assert sent["aws.greengrass.DiskSpooler"] == {"componentVersion": "1.0.6"}
    assert json.loads(sent["aws.greengrass.Nucleus"]["configurationUpdate"]["merge"]) == {
        "a": 1,
        "mqtt": {"spooler": SPOOLER},
        "interpolateComponentConfiguration": True,  # the inference component's policy names {iot:thingName}
    }
    assert sent["com.acme.sensor"] == factory["com.acme.sensor"]
    assert out["ipc"] == {"interpolation": True, "nucleus": "2.12.6", "reason": ""}
    assert out["spooler"]["storage"] == "Disk"
    text = records.message({"outcome": "COMPLETED", "thing_group": "fleet", "spooler": out["spooler"]})
    assert "spooled on disk by the nucleus (aws.greengrass.DiskSpooler 1.0.6 on aws.greengrass.Nucleus 2.12.6)" in text


def test_without_a_nucleus_version_the_deployment_goes_out_and_the_summary_warns(gg: StandInClient) -> None:
    cfg = settings.Settings(artifact_bucket="art", raw_bucket="raw", thing_group_name="fleet", deployments_table="t")
    out = document.start_deployment(gg, _Iot(), _request(), cfg, 60, now=1.0)
    sent = gg.get_deployment(out["deployment_id"])["components"]
    assert set(sent) == {"com.loupe.model", "com.loupe.inference"}
    text = records.message({"outcome": "COMPLETED", "thing_group": "fleet", "spooler": out["spooler"]})
    assert "WARNING offline results: in memory only" in text
    assert out["ipc"]["interpolation"] is False  # no device reports a version either
    text = records.message({"outcome": "COMPLETED", "thing_group": "fleet", "ipc": out["ipc"]})
    assert "WARNING inference results: no aws.greengrass.Nucleus version known" in text


def test_the_nucleus_version_setting_is_validated() -> None:
    env = {"ARTIFACT_BUCKET": "a", "THING_GROUP_NAME": "g", "DEPLOYMENTS_TABLE": "t"}
    assert settings.from_mapping({**env, "NUCLEUS_COMPONENT_VERSION": "2.14.0"}).nucleus_component_version == "2.14.0"
    with pytest.raises(settings.SettingsError, match="NUCLEUS_COMPONENT_VERSION"):
        settings.from_mapping({**env, "NUCLEUS_COMPONENT_VERSION": "latest"})


def test_the_stand_in_refuses_a_public_component_version_that_does_not_exist(gg: StandInClient) -> None:
    with pytest.raises(RuntimeError, match="does not exist"):
        gg.create_deployment(
            targetArn=GROUP_ARN, components={"aws.greengrass.DiskSpooler": {"componentVersion": "9.9.9"}}
        )


def test_the_model_values_travel_as_a_configuration_update_not_only_as_recipe_defaults(gg: StandInClient) -> None:
    """A core device keeps a component's configuration when a new version comes: model N+1's digests must be in
    the deployment's configurationUpdate (a reset of the whole configuration, then the values merged)."""
    cfg = settings.Settings(artifact_bucket="art", raw_bucket="raw", thing_group_name="fleet", deployments_table="t")
    out = document.start_deployment(gg, _Iot(), _request(), cfg, 60, now=1.0)
    model = gg.get_deployment(out["deployment_id"])["components"]["com.loupe.model"]
    assert model["configurationUpdate"]["reset"] == [""]
    assert json.loads(model["configurationUpdate"]["merge"]) == MODEL_VALUES
    inference = gg.get_deployment(out["deployment_id"])["components"]["com.loupe.inference"]
    assert "/accessControl" in inference["configurationUpdate"]["reset"]  # the deployed version's IPC policy


def test_a_model_value_outside_its_whitelist_is_refused_before_the_deployment(gg: StandInClient) -> None:
    record = gg.s.components.private["com.loupe.model"]["1.3.0"]
    record["recipe"]["ComponentConfiguration"] = {"DefaultConfiguration": {**MODEL_VALUES, "modelSha256": "$(id)"}}
    cfg = settings.Settings(artifact_bucket="art", raw_bucket="raw", thing_group_name="fleet", deployments_table="t")
    with pytest.raises(document.DeploymentError, match="ModelSha256"):
        document.start_deployment(gg, _Iot(), _request(), cfg, 60, now=1.0)
    assert gg.list_deployments(targetArn=GROUP_ARN)["deployments"] == []


def _report(gg: StandInClient, thing: str, core_version: str) -> None:
    gg._call("POST", f"local/coreDevices/{thing}/sync", body={"installed": [], "coreVersion": core_version})


def test_ipc_interpolation_goes_to_the_nucleus_the_devices_run_and_an_old_nucleus_is_refused(
    gg: StandInClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gg.s.deployments, "target_things", lambda arn: ["d1", "d2"])
    # the operator's version (or the current deployment's) first
    out, ipc = revision.plan_ipc_interpolation(gg, GROUP_ARN, {}, "2.14.0")
    assert out["aws.greengrass.Nucleus"]["componentVersion"] == "2.14.0"
    assert json.loads(out["aws.greengrass.Nucleus"]["configurationUpdate"]["merge"]) == {
        "interpolateComponentConfiguration": True
    }
    # none given: the one every device of the group reports; devices that disagree: none (never an update)
    _report(gg, "d1", "2.12.6")
    _report(gg, "d2", "2.12.6")
    out, ipc = revision.plan_ipc_interpolation(gg, GROUP_ARN, {}, "")
    assert ipc == {"interpolation": True, "nucleus": "2.12.6", "reason": ""}
    _report(gg, "d2", "2.13.0")
    out, ipc = revision.plan_ipc_interpolation(gg, GROUP_ARN, {}, "")
    assert "aws.greengrass.Nucleus" not in out and ipc["interpolation"] is False
    with pytest.raises(gg_mod.GreengrassError, match="2.6.0 or later"):
        revision.plan_ipc_interpolation(gg, GROUP_ARN, {"aws.greengrass.Nucleus": {"componentVersion": "2.5.6"}})
    # the operator's version wins over the one the current deployment names, as for disk spooling
    current = {"aws.greengrass.Nucleus": {"componentVersion": "2.12.6", "configurationUpdate": {"merge": '{"a": 1}'}}}
    out, ipc = revision.plan_ipc_interpolation(gg, GROUP_ARN, current, "2.14.0")
    assert ipc["nucleus"] == "2.14.0" and json.loads(out["aws.greengrass.Nucleus"]["configurationUpdate"]["merge"]) == {
        "a": 1,
        "interpolateComponentConfiguration": True,
    }
