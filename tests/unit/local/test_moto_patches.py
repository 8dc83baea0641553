"""The assumptions loupe_local.host.moto_patches makes about moto internals. A moto upgrade that moves any of them fails
here, loudly, instead of silently changing how the local loop behaves."""

from __future__ import annotations

import inspect

import moto
import pytest
from support.waiting import wait_for, wait_until

from loupe_local.host import moto_patches


def test_moto_is_the_pinned_version() -> None:
    assert moto.__version__ == moto_patches.MOTO_VERSION


def test_check_version_refuses_another_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto, "__version__", "0.0.1")
    with pytest.raises(moto_patches.MotoVersionError, match="0.0.1"):
        moto_patches.check_version()


def test_lambda_invoke_has_the_patched_signature() -> None:
    from moto.awslambda.models import LambdaFunction

    params = list(inspect.signature(LambdaFunction.invoke).parameters)
    assert params == ["self", "body", "request_headers", "response_headers"]


def test_rule_send_to_targets_signature_and_unknown_target_behaviour() -> None:
    from moto.events.models import Rule

    params = list(inspect.signature(Rule.send_to_targets).parameters)
    assert params[:3] == ["self", "original_event", "transform_input"]
    source = inspect.getsource(Rule.send_to_targets)
    assert "NotImplementedError" in source, "moto now handles more target types: revisit the target split"
    assert hasattr(Rule, "scheduled_expression") or "scheduled_expression" in inspect.getsource(Rule.__init__)


def test_step_functions_execution_switch_and_engine_port() -> None:
    from moto import settings
    from moto.core import config

    assert config.default_user_config["stepfunctions"].keys() >= {"execute_state_machine"}
    assert "MOTO_PORT" in inspect.getsource(settings.moto_server_port)
    from moto.stepfunctions.parser.asl.utils import boto_client

    assert "moto_server_port" in inspect.getsource(boto_client.boto_client_for)


def test_s3_eventbridge_notifications_walk_the_rules() -> None:
    from moto.s3 import notifications

    assert "send_to_targets" in inspect.getsource(notifications._send_event_bridge_message)


def test_apply_replaces_lambda_invoke_and_enables_execution() -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.core import config

    moto_patches.apply()
    assert LambdaFunction.invoke.__module__ == "loupe_local.host.moto_patches"
    assert config.default_user_config["stepfunctions"]["execute_state_machine"] is True


# ------------------------------------------------------------------ 4. AWS SDK integrations of the ASL engine
def _aws_sdk_module():
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_aws_sdk

    return state_task_service_aws_sdk


def test_aws_sdk_task_normalises_its_response_through_the_hook_the_patch_replaces() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )

    # moto's base hook is a no-op and moto's aws-sdk task does not override it (LocalStack's does)
    assert "def _normalise_response" not in inspect.getsource(_aws_sdk_module())
    base = inspect.getsource(StateTaskService._normalise_response)
    assert base.rstrip().endswith("pass"), "moto now normalises responses itself: revisit patch 4"
    # ... and is called on the response the service returned, before the 256 KiB quota check
    run = inspect.getsource(StateTaskService._eval_execution)
    assert run.index("_eval_service_task") < run.index("self._normalise_response(output_value)")
    assert run.index("self._normalise_response(output_value)") < run.index("_after_eval_execution")
    assert "_verify_size_quota" in inspect.getsource(StateTaskService._after_eval_execution)


def test_aws_sdk_error_prefixes_come_from_one_table() -> None:
    module = _aws_sdk_module()
    assert isinstance(module._SERVICE_ERROR_NAMES, dict)
    source = inspect.getsource(module.StateTaskServiceAwsSdk._normalise_service_error_name)
    assert "_SERVICE_ERROR_NAMES" in source
    assert "_normalise_service_error_name" in inspect.getsource(module.StateTaskServiceAwsSdk._from_error)


def test_patched_aws_sdk_task_hands_a_string_body_and_documented_error_names() -> None:
    """Through moto's real ASL engine (in-process): S3 GetObject's Body feeds States.StringToJson, and a missing
    key is caught as S3.NoSuchKeyException, as in Step Functions."""
    import json

    import boto3
    from moto import mock_aws

    moto_patches.apply()
    definition = {
        "StartAt": "Read",
        "States": {
            "Read": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                "Parameters": {"Bucket": "patch-test-bucket", "Key.$": "$.key"},
                "ResultSelector": {"doc.$": "States.StringToJson($.Body)", "type.$": "$.ContentType"},
                "Catch": [{"ErrorEquals": ["S3.NoSuchKeyException"], "ResultPath": "$.error", "Next": "Missing"}],
                "End": True,
            },
            "Missing": {"Type": "Pass", "Parameters": {"error.$": "$.error.Error"}, "End": True},
        },
    }
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="patch-test-bucket")
        s3.put_object(
            Bucket="patch-test-bucket",
            Key="doc.json",
            Body=b'{"version": 3, "name": "caf\xc3\xa9"}',
            ContentType="application/json",
        )
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="patch-test", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]

        def run(name: str, key: str) -> dict:
            ex = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps({"key": key}))["executionArn"]
            return wait_for(
                lambda: (d := sfn.describe_execution(executionArn=ex))["status"] != "RUNNING" and d,
                30,
                f"{name} to finish",
                interval=0.05,
            )

        found = run("found", "doc.json")
        assert found["status"] == "SUCCEEDED", found.get("cause")
        assert json.loads(found["output"]) == {"doc": {"version": 3, "name": "café"}, "type": "application/json"}
        s3.put_object(Bucket="patch-test-bucket", Key="image.png", Body=b"\x89PNG\r\n\x1a\n\xff\xfe")
        binary = run("binary", "image.png")
        assert binary["status"] == "FAILED" and binary["error"] == "States.Runtime"
        assert "does not support binary content" in binary["cause"]
        missing = run("missing", "absent.json")
        assert missing["status"] == "SUCCEEDED", (missing.get("error"), missing.get("cause"))
        assert json.loads(missing["output"]) == {"error": "S3.NoSuchKeyException"}


# ------------------------------------------------------------------ 5. unnamed executions
def test_engine_backend_start_execution_signature_and_name_handling() -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    params = list(inspect.signature(StepFunctionsParserBackend.start_execution).parameters)
    assert params == ["self", "state_machine_arn", "name", "execution_input", "trace_header"]
    assert callable(StepFunctionsParserBackend._validate_name)
    # the API layer passes the request's name through, None when absent
    assert "start_execution(\n            arn, name, execution_input" in inspect.getsource(
        StepFunctionResponse.start_execution
    )


def test_unnamed_executions_get_uuids_and_bad_names_are_refused() -> None:
    import json
    import uuid

    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    moto_patches.apply()
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="unnamed", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        first = sfn.start_execution(stateMachineArn=arn, input='{"reason": "schedule"}')["executionArn"]
        second = sfn.start_execution(stateMachineArn=arn, input='{"reason": "schedule"}')["executionArn"]
        assert first != second
        for execution in (first, second):
            uuid.UUID(execution.rsplit(":", 1)[-1])  # the name Step Functions generates is a UUID
        # StartExecution's documented refusals: a character outside the allowed set, more than 80 characters
        for bad, code in (("has space", "InvalidName"), ("x" * 81, "ValidationException")):
            with pytest.raises(ClientError) as refused:
                sfn.start_execution(stateMachineArn=arn, name=bad)
            assert refused.value.response["Error"]["Code"] == code


# ------------------------------------------------------------------ 6. task-token callbacks
def test_engine_backend_send_task_success_signature_and_no_output_check() -> None:
    from moto.stepfunctions.parser import api
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    # moto's own method, as its source file has it (the class attribute may already be the patch)
    source = inspect.getsource(StepFunctionsParserBackend)
    method = source[source.index("    def send_task_success(") : source.index("    def send_task_failure(")]
    assert "self, task_token: TaskToken, outcome: str" in method
    assert "json" not in method, "moto now checks the output itself: revisit patch 6"
    assert "send_task_success(task_token, output)" in inspect.getsource(StepFunctionResponse.send_task_success)
    # the service exceptions take (message, type, status) like moto's AWSError
    error = api.InvalidOutput("m", "InvalidOutput")
    assert (error.error_type, error.code) == ("InvalidOutput", 400)


def test_send_task_success_refuses_bad_output_and_the_task_keeps_waiting() -> None:
    import json

    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    moto_patches.apply()
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl.$": "$.queue", "MessageBody": {"token.$": "$$.Task.Token"}},
                "End": True,
            }
        },
    }
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue = sqs.create_queue(QueueName="patch-callbacks")["QueueUrl"]
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="callbacks", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=arn, name="wait", input=json.dumps({"queue": queue}))
        messages = wait_for(
            lambda: sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages"), 30, "the task token", 0
        )
        token = json.loads(messages[0]["Body"])["token"]

        for output, code in (
            ("{not json", "InvalidOutput"),
            (json.dumps({"x": "y" * 300 * 1024}), "ValidationException"),
        ):
            with pytest.raises(ClientError) as refused:
                sfn.send_task_success(taskToken=token, output=output)
            assert refused.value.response["Error"]["Code"] == code
            assert sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING"

        sfn.send_task_success(taskToken=token, output=json.dumps({"ok": True}))
        done = wait_until(
            lambda: (d := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] != "RUNNING" and d,
            30,
            0.05,
        )
        assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"ok": True}


def test_server_app_is_motos_domain_dispatcher() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    assert "create_app" in inspect.signature(DomainDispatcherApplication).parameters
    assert callable(create_backend_app)
    assert isinstance(moto_patches.server_app(), DomainDispatcherApplication)


def test_server_app_grants_no_cors(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto adds flask-cors (``Access-Control-Allow-Origin: *``) to each service's app unless its module global
    ``DISABLE_GLOBAL_CORS`` is set; server_app() sets it, so no app it builds answers a page's origin."""
    from moto.moto_server import werkzeug_app

    monkeypatch.setattr(werkzeug_app, "DISABLE_GLOBAL_CORS", False)
    assert "DISABLE_GLOBAL_CORS" in inspect.getsource(werkzeug_app.create_backend_app)
    moto_patches.server_app()
    assert werkzeug_app.DISABLE_GLOBAL_CORS is True
    reply = werkzeug_app.create_backend_app("sts").test_client().get("/", headers={"Origin": "https://evil.example"})
    assert not [k for k, _ in reply.headers.items() if k.lower().startswith("access-control-")]


def test_engine_service_clients_sign_with_the_run_credential() -> None:
    """The ASL engine builds its clients with ``boto3.client(aws_access_key_id="ak", ...)`` through its module's
    ``boto3`` global; after apply() they carry the credential set_engine_credentials gave, else moto's own."""
    from moto.stepfunctions.parser.asl.utils import boto_client

    assert '"ak"' in inspect.getsource(boto_client.boto_client_for)
    moto_patches.apply()
    moto_patches.set_engine_credentials("AKIALOUPERUN00000000", "run-secret")
    try:
        creds = boto_client.boto_client_for("us-east-1", "s3")._request_signer._credentials
        assert (creds.access_key, creds.secret_key) == ("AKIALOUPERUN00000000", "run-secret")
    finally:
        moto_patches.set_engine_credentials(None)
    assert boto_client.boto_client_for("us-east-1", "s3")._request_signer._credentials.access_key == "ak"


# the engine modules that call boto_client_for (moto 5.2.5); each must sign as the state's role
_ENGINE_CALLERS = [
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sns",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sqs",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_events",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
]


@pytest.mark.parametrize("module_name", _ENGINE_CALLERS)
def test_engine_service_clients_sign_as_the_states_role_session(module_name: str) -> None:
    """Every engine call site passes the state's StateCredentials (the state machine's role, or a Task's
    Credentials.RoleArn) to boto_client_for; after apply() the client signs with that role's session, and with
    the run's key for a role that has none."""
    import importlib

    from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials

    module = importlib.import_module(module_name)
    moto_patches.apply()
    role = "arn:aws:iam::123456789012:role/loupe-StateMachineRole"
    session = {"aws_access_key_id": "ASIALOUPEROLE0000000", "aws_secret_access_key": "s", "aws_session_token": "t"}
    moto_patches.set_engine_credentials("AKIALOUPERUN00000000", "run-secret")
    moto_patches.set_engine_role_credentials(lambda arn: session if arn == role else None)
    try:
        make = module.boto_client_for
        creds = make(region="us-east-1", service="lambda", state_credentials=StateCredentials(role))._request_signer
        assert (creds._credentials.access_key, creds._credentials.token) == ("ASIALOUPEROLE0000000", "t")
        other = make(region="us-east-1", service="lambda", state_credentials=StateCredentials(role + "x"))
        assert other._request_signer._credentials.access_key == "AKIALOUPERUN00000000"
        # the next Task state of the same role reuses its client; another role, service or region gets its own
        again = make(region="us-east-1", service="lambda", state_credentials=StateCredentials(role))
        assert again._request_signer is creds
        assert make(region="us-east-1", service="sqs", state_credentials=StateCredentials(role)) is not again
        assert make(region="eu-west-1", service="lambda", state_credentials=StateCredentials(role)) is not again
    finally:
        moto_patches.set_engine_role_credentials(None)
        moto_patches.set_engine_credentials(None)


def test_render_input_template_uses_motos_event_template_parser() -> None:
    from moto.events.utils import EventTemplateParser

    params = list(inspect.signature(EventTemplateParser.parse).parameters)
    assert params[-3:] == ["input_template", "input_paths_map", "event"]
    event = {"detail": {"bucket": "b", "key": "k"}, "ingestion-time": "2026-01-01T00:00:00Z"}
    rendered = moto_patches.render_input_template(
        '{"bucket": "<bucket>", "key": "<key>"}', {"bucket": "$.detail.bucket", "key": "$.detail.key"}, event
    )
    assert rendered == {"bucket": "b", "key": "k"}


def _sent(service: str, method: str, params: dict) -> object:
    import botocore.session

    sent: list[object] = []

    class Stop(Exception):
        pass

    def capture(request: object, **_: object) -> None:
        sent.append(request)
        raise Stop

    client = botocore.session.get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    client.meta.events.register("before-send", capture)
    with pytest.raises(Stop):
        getattr(client, method)(**params)
    return sent[0]


@pytest.mark.parametrize(
    ("service", "method", "params", "operation", "member", "value"),
    [
        ("s3", "head_object", {"Bucket": "b", "Key": "raw/a b.jpg"}, "HeadObject", "Key", "raw/a b.jpg"),
        ("dynamodb", "get_item", {"TableName": "T", "Key": {"pk": {"S": "x"}}}, "GetItem", "TableName", "T"),
        (
            "sns",
            "publish",
            {"TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "m"},
            "Publish",
            "TopicArn",
            "arn:aws:sns:us-east-1:1:t",
        ),
        ("greengrassv2", "get_deployment", {"deploymentId": "d-1"}, "GetDeployment", "deploymentId", "d-1"),
        (
            "sagemaker-featurestore-runtime",
            "put_record",
            {"FeatureGroupName": "fg", "Record": [{"FeatureName": "a", "ValueAsString": "1"}]},
            "PutRecord",
            "FeatureGroupName",
            "fg",
        ),
    ],
)
def test_parse_request_names_the_operation_and_its_input(
    service: str, method: str, params: dict, operation: str, member: str, value: str
) -> None:
    request = _sent(service, method, params)
    name, parsed = moto_patches.parse_request(
        service,
        request.method,
        request.url,
        request.headers,
        request.body,  # type: ignore[attr-defined]
    )
    assert (name, parsed[member]) == (operation, value)


def test_parse_request_refuses_a_request_that_matches_no_operation() -> None:
    with pytest.raises(LookupError, match="matches no operation"):
        moto_patches.parse_request("greengrassv2", "PATCH", "http://127.0.0.1:1/nothing/here", {}, b"")


def test_moto_dynamodb_requests_run_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's DynamoDB backend is not thread-safe (a Query summing an item's size while another request updated it
    failed with 'dictionary changed size during iteration' in a demo run): the local AWS serialises its requests."""
    import threading
    import time

    from moto.dynamodb.responses import DynamoHandler

    active, most = 0, 0
    lock = threading.Lock()

    def slow_call(self: object) -> tuple[int, dict[str, str], str]:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.02)  # a call that takes a while, so that unserialised calls would overlap: not a wait
        with lock:
            active -= 1
        return 200, {}, "{}"

    monkeypatch.setattr(DynamoHandler, "call_action", slow_call)
    moto_patches._serialise_dynamodb()
    assert getattr(DynamoHandler.call_action, "loupe_patched", False)
    threads = [threading.Thread(target=DynamoHandler.call_action, args=(None,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1


def test_the_servers_dispatch_decides_a_hosts_backend_once_and_as_moto_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's dispatcher lists its own package folder and tries its URL patterns on every request (~1 ms of CPU
    under one lock); the local AWS remembers the answer per host: the same backend moto gives, found once."""
    import io

    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    hosts = [
        "s3.us-east-1.amazonaws.com",
        "loupe-raw.s3.amazonaws.com",  # virtual-hosted S3
        "states.us-east-1.amazonaws.com",
        "dynamodb.us-east-1.amazonaws.com",
        "sts.amazonaws.com",
        "iot.us-east-1.amazonaws.com",
        "sagemaker",  # a module name
        "moto_api",
        None,
    ]
    monkeypatch.setattr(
        DomainDispatcherApplication, "get_backend_for_host", DomainDispatcherApplication.get_backend_for_host
    )
    plain = DomainDispatcherApplication(create_backend_app)
    expected = [plain.get_backend_for_host(h) for h in hosts]
    assert expected[:4] == ["s3", "s3", "stepfunctions", "dynamodb"]
    moto_patches._cache_backend_dispatch()
    assert getattr(DomainDispatcherApplication.get_backend_for_host, "loupe_patched", False)
    dispatcher = DomainDispatcherApplication(create_backend_app)
    assert [dispatcher.get_backend_for_host(h) for h in hosts] == expected
    scans = []
    listing = backends.list_of_moto_modules
    monkeypatch.setattr(backends, "list_of_moto_modules", lambda: scans.append(1) or listing())
    assert [dispatcher.get_backend_for_host(h) for h in hosts] == expected
    assert scans == []  # decided once: no folder listing, no pattern walk the second time
    # a whole request's dispatch: the service from the signature's scope, the same app every time
    environ = {
        "PATH_INFO": "/",
        "HTTP_HOST": "127.0.0.1:5000",
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/x-amz-json-1.0",
        "CONTENT_LENGTH": "0",
        "HTTP_X_AMZ_TARGET": "AWSStepFunctions.ListStateMachines",
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1/states/aws4_request, "
        "SignedHeaders=host, Signature=x",
    }
    apps = [dispatcher.get_application({**environ, "wsgi.input": io.BytesIO(b"")}) for _ in range(3)]
    assert apps[0] is apps[1] is apps[2] and apps[0] is dispatcher.app_instances["stepfunctions"]


def test_a_transaction_backs_up_each_table_once_and_still_rolls_back_as_a_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto deep-copies a table for every item of a TransactWriteItems (its rollback copy); the local AWS copies
    each table once per transaction. A transaction whose condition fails still writes nothing."""
    import boto3
    from moto import mock_aws
    from moto.dynamodb import models

    original = inspect.getsource(inspect.unwrap(models.DynamoDBBackend.transact_write_items))
    assert original.count("copy.deepcopy(") == 1 and "original_table_state[table_name] = copy.deepcopy(" in original
    moto_patches._copy_each_table_once_per_transaction()
    assert getattr(models.DynamoDBBackend.transact_write_items, "loupe_patched", False)
    real = models.copy._real
    deepcopy = real.deepcopy
    table_copies = []

    def counting(obj: object, memo: object = None) -> object:
        if isinstance(obj, models.Table):
            table_copies.append(obj)
        return deepcopy(obj, memo)

    monkeypatch.setattr(real, "deepcopy", counting)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="t", Item={"pk": {"S": "taken"}})
        puts = [{"Put": {"TableName": "t", "Item": {"pk": {"S": f"k{i}"}}}} for i in range(4)]
        ddb.transact_write_items(TransactItems=puts)
        assert len(table_copies) == 1  # four writes, one backup of the table
        assert ddb.scan(TableName="t")["Count"] == 5
        refused = [{"Put": {"TableName": "t", "Item": {"pk": {"S": f"n{i}"}}}} for i in range(3)] + [
            {
                "Put": {
                    "TableName": "t",
                    "Item": {"pk": {"S": "taken"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            ddb.transact_write_items(TransactItems=refused)
        assert len(table_copies) == 2
        keys = sorted(i["pk"]["S"] for i in ddb.scan(TableName="t")["Items"])
        assert keys == ["k0", "k1", "k2", "k3", "taken"]  # the refused transaction wrote none of its items
        # outside a transaction the module's copy is the real one: an item copied twice is two copies
        item = {"a": [1]}
        assert models.copy.deepcopy(item) is not models.copy.deepcopy(item)
