"""The provisioner's DynamoDB tables keep what the template says about deletion: DeletionProtectionEnabled (a
Boolean, or the "true"/"false" string a parameter resolves to) reaches the table, so DeleteTable is refused locally
as in AWS; DeletionPolicy/UpdateReplacePolicy are resource attributes the provisioner accepts and leaves alone."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from loupe_local.host.provisioner import Provisioner
from loupe_local.template import TemplateError, load_sam_app

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Protect:
    Type: String
    Default: "true"
Resources:
  History:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
    Properties:
      DeletionProtectionEnabled: {protect}
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{{AttributeName: pk, AttributeType: S}}]
      KeySchema: [{{AttributeName: pk, KeyType: HASH}}]
"""


class _Session:
    def client(self, service: str):
        return boto3.client(service, region_name="us-east-1")


def _provision(tmp_path: Path, protect: str) -> str:
    (tmp_path / "template.yaml").write_text(TEMPLATE.format(protect=protect))
    app = load_sam_app(tmp_path / "template.yaml")
    done = Provisioner(app, _Session(), "stk", "us-east-1", {}).provision()
    return str(done["History"].ref)


@pytest.mark.parametrize("protect", ["true", "!Ref Protect"])
def test_a_protected_table_refuses_delete_table(tmp_path: Path, protect: str) -> None:
    with mock_aws():
        name = _provision(tmp_path, protect)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        assert ddb.describe_table(TableName=name)["Table"]["DeletionProtectionEnabled"] is True
        with pytest.raises(ddb.exceptions.ClientError, match="DeletionProtectionEnabled"):
            ddb.delete_table(TableName=name)
        assert name in ddb.list_tables()["TableNames"]


def test_an_unprotected_table_can_be_deleted(tmp_path: Path) -> None:
    with mock_aws():
        name = _provision(tmp_path, "false")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.delete_table(TableName=name)
        assert name not in ddb.list_tables()["TableNames"]


def test_a_non_boolean_is_refused_by_name(tmp_path: Path) -> None:
    with mock_aws(), pytest.raises(TemplateError, match="'sometimes' is not a Boolean"):
        _provision(tmp_path, "sometimes")
