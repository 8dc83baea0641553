"""The fleet's thing group may be shared with other teams: template.yaml uses an existing one by parameter
(CreateThingGroup=false, the default) and creates one only when asked. The local provisioner fails, as
CloudFormation does, when the stack would create a group whose name exists, so "use the existing group" is the
only way to deploy next to one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from loupe_local.host.provisioner import Provisioner
from loupe_local.template import TemplateError, load_sam_app, load_yaml

ROOT = Path(__file__).resolve().parents[3]
SHARED = "plant-7-edge"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_yaml(ROOT / "template.yaml")


def _fleet_part(template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml's fleet group: its parameters, conditions and resource, exactly as written there."""
    resource = template["Resources"]["FleetThingGroup"]
    names = ("ThingGroupName", "CreateThingGroup")
    return {
        "Parameters": {k: template["Parameters"][k] for k in names if k in template["Parameters"]},
        "Conditions": {k: v for k, v in template.get("Conditions", {}).items() if k == resource.get("Condition")},
        "Resources": {"FleetThingGroup": resource},
    }


class _Session:
    def client(self, service: str) -> Any:
        return boto3.client(service, region_name="us-east-1")


def _provision(tmp_path: Path, part: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    (tmp_path / "template.yaml").write_text(yaml.safe_dump({k: v for k, v in part.items() if v}))
    app = load_sam_app(tmp_path / "template.yaml")
    return Provisioner(app, _Session(), "stk", "us-east-1", parameters).provision()


def _shared_group() -> str:
    iot = boto3.client("iot", region_name="us-east-1")
    iot.create_thing_group(thingGroupName=SHARED, thingGroupProperties={"thingGroupDescription": "team B's cameras"})
    iot.create_thing(thingName="team-b-cam")
    iot.add_thing_to_thing_group(thingGroupName=SHARED, thingName="team-b-cam")
    return iot.describe_thing_group(thingGroupName=SHARED)["thingGroupId"]


def test_an_existing_group_is_used_by_parameter_and_left_alone(tmp_path: Path, template) -> None:
    with mock_aws():
        group_id = _shared_group()
        done = _provision(tmp_path, _fleet_part(template), {"ThingGroupName": SHARED})
        assert done["FleetThingGroup"].skipped == "condition is false"
        iot = boto3.client("iot", region_name="us-east-1")
        group = iot.describe_thing_group(thingGroupName=SHARED)
        assert group["thingGroupId"] == group_id
        assert group["thingGroupProperties"]["thingGroupDescription"] == "team B's cameras"
        assert [t for t in iot.list_things_in_thing_group(thingGroupName=SHARED)["things"]] == ["team-b-cam"]


def test_creating_a_group_whose_name_exists_fails_as_in_cloudformation(tmp_path: Path, template) -> None:
    with mock_aws():
        _shared_group()
        with pytest.raises(TemplateError, match=rf"AWS::IoT::ThingGroup' with identifier '{SHARED}' already exists"):
            _provision(tmp_path, _fleet_part(template), {"ThingGroupName": SHARED, "CreateThingGroup": "true"})


def test_the_stack_creates_the_group_only_when_asked(tmp_path: Path, template) -> None:
    with mock_aws():
        done = _provision(tmp_path, _fleet_part(template), {"ThingGroupName": "loupe-new", "CreateThingGroup": "true"})
        assert done["FleetThingGroup"].ref == "loupe-new"
        boto3.client("iot", region_name="us-east-1").describe_thing_group(thingGroupName="loupe-new")


def test_a_group_the_stack_created_outlives_the_stack(template) -> None:
    # deleting a thing group removes every team's deployment target: CloudFormation keeps it (DeletionPolicy)
    resource = template["Resources"]["FleetThingGroup"]
    assert resource["DeletionPolicy"] == "Retain" and resource["UpdateReplacePolicy"] == "Retain"


def test_nothing_references_the_group_resource_itself(template) -> None:
    # with CreateThingGroup=false the resource does not exist: every reference goes through ThingGroupName
    text = (ROOT / "template.yaml").read_text()
    assert "!Ref FleetThingGroup" not in text and "FleetThingGroup." not in text
    assert '"Ref": "FleetThingGroup"' not in str(template)


def test_local_devices_join_the_existing_group_by_its_name(tmp_path: Path) -> None:
    from loupe_local.devices.fleet import DeviceFleet

    # CreateThingGroup=false: the stack holds no FleetThingGroup resource; the devices use ThingGroupName
    state = {
        "endpoint": "http://127.0.0.1:1",
        "credentials": {"aws_access_key_id": "k", "aws_secret_access_key": "s"},
        "resources": {"FleetThingGroup": {"type": "AWS::IoT::ThingGroup", "physical": None}},
        "parameters": {"ThingGroupName": SHARED, "CreateThingGroup": "false", "CoreDeviceThingNamePrefix": "plant7-"},
    }
    fleet = DeviceFleet.from_state(state, tmp_path)
    assert fleet.thing_group == SHARED
    # and are named as the devices' IoT policy admits them (CoreDeviceThingNamePrefix)
    assert fleet.names(2) == ["plant7-1", "plant7-2"]
