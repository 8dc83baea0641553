"""The embedded local AWS, as a user and the loop see it: template.yaml provisioned into moto, events delivered
to the real handlers, state machines from statemachines/ executed by moto's engine, the CLI and the aws CLI."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support import image_samples as samples
from support.waiting import wait_until

from loupe.ledger import Ledger
from loupe_local.host.provisioner import Provisioner
from loupe_local.host.runtime import free_port
from loupe_local.template import TemplateError, load_sam_app, load_yaml

pytestmark = pytest.mark.integration


def test_every_supported_resource_of_the_template_exists(local_aws, repo_root: Path) -> None:
    template = load_yaml(repo_root / "template.yaml")
    declared = template["Resources"]
    buckets = {b["Name"] for b in local_aws.client("s3").list_buckets()["Buckets"]}
    tables = set(local_aws.client("dynamodb").list_tables()["TableNames"])
    machines = {m["stateMachineArn"] for m in local_aws.client("stepfunctions").list_state_machines()["stateMachines"]}
    for logical_id, res in declared.items():
        if res["Type"] == "AWS::S3::Bucket":
            assert local_aws.physical(logical_id) in buckets
        elif res["Type"] == "AWS::DynamoDB::Table":
            assert local_aws.physical(logical_id) in tables
        elif res["Type"] == "AWS::Serverless::StateMachine":
            assert local_aws.arn(logical_id) in machines
    groups = local_aws.client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert "loupe-models" in {g["ModelPackageGroupName"] for g in groups}
    state = json.loads((local_aws.state_dir / "local.json").read_text())
    assert state["endpoint"] == local_aws.endpoint
    assert state["resources"]["RawBucket"]["physical"] == local_aws.physical("RawBucket")


def test_tables_that_hold_history_refuse_deletion_locally_as_in_aws(local_aws) -> None:
    """template.yaml's DeletionProtectionEnabled reaches the local tables: DeleteTable of the ledger is refused
    (and the ledger stays), while the idempotency table, deletable by design, is not protected."""
    ddb = local_aws.client("dynamodb")
    for logical_id in ("LedgerTable", "DeploymentsTable"):
        name = local_aws.physical(logical_id)
        assert ddb.describe_table(TableName=name)["Table"]["DeletionProtectionEnabled"] is True
    ledger = local_aws.physical("LedgerTable")
    with pytest.raises(ddb.exceptions.ClientError, match="DeletionProtectionEnabled"):
        ddb.delete_table(TableName=ledger)
    assert ddb.describe_table(TableName=ledger)["Table"]["TableStatus"] == "ACTIVE"
    idempotency = ddb.describe_table(TableName=local_aws.physical("IdempotencyTable"))["Table"]
    assert idempotency.get("DeletionProtectionEnabled", False) is False


def test_s3_object_created_under_raw_reaches_the_ingest_handler(local_aws) -> None:
    fn = local_aws.invoker.find(local_aws.physical("IngestImageFunction"))
    before = fn.invocations
    key = f"raw/foundation-{uuid.uuid4().hex}.jpg"
    local_aws.client("s3").put_object(Bucket=local_aws.physical("RawBucket"), Key=key, Body=b"not really a jpeg")
    assert wait_until(lambda: fn.invocations > before), "the S3 -> EventBridge -> Lambda route did not deliver"
    # objects outside raw/ do not match the rule: a sentinel image under raw/, put after, is ingested alone
    count = fn.invocations
    s3 = local_aws.client("s3")
    s3.put_object(Bucket=local_aws.physical("RawBucket"), Key=f"other/{uuid.uuid4().hex}", Body=b"x")
    sentinel = samples.jpeg(seed=uuid.uuid4().int % 100_000)
    s3.put_object(Bucket=local_aws.physical("RawBucket"), Key=f"raw/sentinel-{uuid.uuid4().hex}.jpg", Body=sentinel)
    table = local_aws.resource("dynamodb").Table(local_aws.physical("LedgerTable"))
    ledger = Ledger(table)
    assert wait_until(lambda: ledger.get(hashlib.sha256(sentinel).hexdigest())), "the sentinel image was not ingested"
    assert fn.invocations == count + 1


def test_a_state_machine_file_runs_in_motos_engine_and_calls_real_handlers(local_aws, repo_root: Path) -> None:
    """The labeling machine from statemachines/ is executed; the functions its Task states name are really called."""
    definition = json.loads((repo_root / "statemachines" / "labeling.asl.json").read_text())
    targets = set()

    def walk(states: dict) -> None:
        for state in states.values():
            name = (state.get("Parameters") or state.get("Arguments") or {}).get("FunctionName", "")
            if name.startswith("${") and name.endswith("}"):
                targets.add(name[2:-1])
            for branch in state.get("Branches", []):
                walk(branch["States"])
            for key in ("Iterator", "ItemProcessor"):
                if key in state:
                    walk(state[key]["States"])

    walk(definition["States"])
    subs = load_sam_app(repo_root / "template.yaml").resources["LabelingStateMachine"]["Properties"][
        "DefinitionSubstitutions"
    ]
    logical = {subs[t]["Fn::GetAtt"][0] for t in targets if isinstance(subs.get(t), dict) and "Fn::GetAtt" in subs[t]}
    assert logical, "the labeling machine should invoke at least one function of the template"
    functions = [local_aws.invoker.find(local_aws.physical(lid)) for lid in logical]
    before = sum(f.invocations for f in functions)
    sfn = local_aws.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=local_aws.arn("LabelingStateMachine"),
        name=f"foundation-{uuid.uuid4().hex[:8]}",
        input=json.dumps({"images": [], "reason": "foundation-test"}),
    )["executionArn"]
    assert wait_until(lambda: sum(f.invocations for f in functions) > before, timeout=30)
    status = wait_until(
        lambda: (
            sfn.describe_execution(executionArn=execution)["status"] != "RUNNING"
            and sfn.describe_execution(executionArn=execution)["status"]
        ),
        timeout=30,
    )
    assert status in ("SUCCEEDED", "FAILED"), status
    history = sfn.get_execution_history(executionArn=execution)["events"]
    assert any(e["type"] == "LambdaFunctionScheduled" or e["type"].startswith("TaskScheduled") for e in history)


def test_a_state_machine_naming_an_undeclared_function_stops_provisioning(local_aws, tmp_path: Path) -> None:
    (tmp_path / "statemachines").mkdir()
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("def lambda_handler(event, context):\n    return event\n")
    (tmp_path / "statemachines" / "m.asl.json").write_text(
        json.dumps(
            {
                "StartAt": "Call",
                "States": {
                    "Call": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::lambda:invoke",
                        "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:GhostFunction"},
                        "End": True,
                    }
                },
            }
        )
    )
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n"
        "  RealFunction:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      CodeUri: fn/\n      Handler: app.lambda_handler\n      Runtime: python3.12\n"
        "  Machine:\n    Type: AWS::Serverless::StateMachine\n"
        "    Properties:\n      DefinitionUri: statemachines/m.asl.json\n"
    )
    app = load_sam_app(tmp_path / "template.yaml")

    class Session:
        def client(self, service: str):
            return local_aws.client(service)

    provisioner = Provisioner(app, Session(), f"bad{uuid.uuid4().hex[:6]}", "us-east-1", {})
    with pytest.raises(TemplateError, match="GhostFunction"):
        provisioner.provision()

    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n"
        "  Machine:\n    Type: AWS::Serverless::StateMachine\n"
        "    Properties:\n      DefinitionUri: statemachines/m.asl.json\n"
        "      DefinitionSubstitutions:\n        Fn: !GetAtt MissingFunction.Arn\n"
    )
    app = load_sam_app(tmp_path / "template.yaml")
    provisioner = Provisioner(app, Session(), f"bad{uuid.uuid4().hex[:6]}", "us-east-1", {})
    with pytest.raises(TemplateError, match="MissingFunction"):
        provisioner.provision()


def test_a_port_in_use_gives_another_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        assert free_port(busy) != busy
    assert free_port(None) > 0


def test_cli_up_detached_serves_the_aws_cli_and_down_stops_it(repo_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "LOUPE_STATE_DIR": str(tmp_path)}
    for key in ("AWS_ENDPOINT_URL", "MOTO_PORT"):
        env.pop(key, None)
    bin_dir = Path(sys.executable).parent
    up = subprocess.run(
        [str(bin_dir / "loupe"), "local", "up", "--detach", "--no-mqtt"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads((tmp_path / "local.json").read_text())
    try:
        # `loupe local env` hands out the run's credential; the local AWS refuses any other
        printed = subprocess.run(
            [str(bin_dir / "loupe"), "local", "env"], cwd=repo_root, env=env, capture_output=True, text=True, timeout=60
        )
        assert printed.returncode == 0, printed.stderr
        exported = dict(line.removeprefix("export ").split("=", 1) for line in printed.stdout.splitlines())
        assert exported["AWS_ACCESS_KEY_ID"] == state["credentials"]["aws_access_key_id"]
        aws_env = {**env, **exported}
        guessed = {**aws_env, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
        refused = subprocess.run(
            [str(bin_dir / "aws"), "--endpoint-url", state["endpoint"], "s3", "ls"],
            env=guessed,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0 and "InvalidAccessKeyId" in refused.stderr, refused.stderr
        ls = subprocess.run(
            [str(bin_dir / "aws"), "--endpoint-url", state["endpoint"], "s3", "ls"],
            env=aws_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ls.returncode == 0, ls.stderr
        for logical in ("RawBucket", "ArtifactBucket"):
            assert state["resources"][logical]["physical"] in ls.stdout
        machines = subprocess.run(
            [str(bin_dir / "aws"), "--endpoint-url", state["endpoint"], "stepfunctions", "list-state-machines"],
            env=aws_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        names = {m["name"] for m in json.loads(machines.stdout)["stateMachines"]}
        assert len(names) == 3 and all(n.startswith("loupe-") for n in names)
    finally:
        down = subprocess.run(
            [str(bin_dir / "loupe"), "local", "down"],
            cwd=repo_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert down.returncode == 0, down.stderr
    pid = state["pid"]
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not (tmp_path / "local.json").exists()
