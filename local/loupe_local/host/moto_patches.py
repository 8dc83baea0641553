"""Every patch of moto internals the local runtime needs, in one place, pinned to one moto version.

tests/unit/local/test_moto_patches.py checks each assumption made here, so a moto upgrade that moves any of
them fails loudly instead of silently changing the local loop.

1. Lambda invoke (moto runs code only through Docker) -> the in-process invoker.
2. EventBridge rule targets that are Lambda functions or state machines (moto delivers only to SQS, logs,
   archives and buses) -> the event router.
3. Step Functions execution (LocalStack's ASL interpreter inside moto) is switched on.
4. AWS SDK integrations (``arn:aws:states:::aws-sdk:<service>:<action>``) answer as Step Functions documents
   ("AWS SDK service integrations", supported-services-awssdk.html): a streamed response member such as S3
   GetObject's ``Body`` reaches the state as a string (moto's engine handed it the botocore stream), and errors
   carry the service's documented exception prefix (``S3.NoSuchKeyException``; moto wrote ``s3.NoSuchKeyException``,
   which no Catch written for AWS matches).
5. StartExecution without a ``name`` gets a UUID as Step Functions documents (API_StartExecution); moto's engine
   named every such execution "None", so a schedule (EventBridge starts executions unnamed) ran once per process
   and then failed with ExecutionAlreadyExists. A given name is checked as StartExecution documents (InvalidName,
   more than 80 characters), which moto's engine skipped.
6. SendTaskSuccess refuses what Step Functions refuses (API_SendTaskSuccess): output that is not JSON
   (InvalidOutput) or above the 256 KiB payload quota (ValidationException); the task keeps waiting. moto's
   engine accepted both and then failed the execution, so a broken callback looked delivered to its sender.
7. The ASL engine's own service calls (it calls the server over HTTP) sign with the run's credential
   (``set_engine_credentials``): moto's engine signed them with the fixed key ``ak``/``sk``, which the gateway in
   front of moto (``loupe_local.local_auth``) refuses like any other unknown key.
8. A Cognito app client that names no ``ReadAttributes`` reads ``email_verified``, ``phone_number_verified`` and
   the pool's standard attributes, as CreateUserPoolClient documents (API_CreateUserPoolClient, ReadAttributes):
   the ID token carries them. moto read none, and wrote the ``email`` claim of a pool whose users sign in by e-mail
   from the name the sign-in used, so an SRP sign-in, which answers with the user's internal name
   (USER_ID_FOR_SRP), got an ID token whose ``email`` was that UUID.

9. A bucket policy is not applied by moto's object handlers, which refused with 403 whatever a Deny statement
   names, ignoring its Principal and Condition (the template's TLS-only deny refused every local object call);
   ``loupe_local.iam`` evaluates bucket policies for role sessions (``resource_policy()`` reads any resource's
   policy from moto's backends).

11. The server's dispatcher decides a request's service once per host, not on every request: moto 5.2.5's
   ``DomainDispatcherApplication.get_backend_for_host`` lists and stats moto's own package folder
   (``backends.list_of_moto_modules``) and then tries ~600 URL patterns, ~1 ms of CPU per request under the
   dispatcher's one lock, for an answer that never changes in a process (a `loupe demo --quick` makes ~10,000
   role calls alone). Performance only: the same backend for the same host.
12. TransactWriteItems backs up each table it writes once, not once per item: moto 5.2.5 deep-copies the whole
   table for every item of the transaction (its rollback copy), so a transaction of n writes to one table copied
   that table n times, and a session's tables only grow. The copies are identical (nothing is written before
   they are all made); performance only.

``server_app()`` is moto's app without its global CORS (``MOTO_DISABLE_GLOBAL_CORS``): moto otherwise answers
every origin with ``Access-Control-Allow-Origin: *``, which lets any web page read the local AWS.

Besides the patches, the other internals the local runtime uses are reached only through this module:
``server_app()`` (moto's WSGI app, which the gateway wraps) and ``render_input_template()`` (EventBridge's
InputTransformer, for the router's Lambda and Step Functions targets) and ``parse_request()`` (moto's request
router and protocol parsers: which operation an HTTP request calls, with its input, for the local IAM resolver).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

import moto

MOTO_VERSION = "5.2.5"

log = logging.getLogger("loupe_local.moto")

_applied = False
_lambda_handler: Callable[[str, Any, bool], tuple[Any, bool]] | None = None
_event_target_handler: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
# (target, rule ARN) -> whether EventBridge may deliver to an SQS or SNS target moto delivers itself (the target's
# resource policy, loupe_local.iam.resource_policies); None: every target
_event_target_filter: Callable[[dict[str, Any], str], bool] | None = None
_engine_credentials: tuple[str, str] | None = None
# role ARN -> boto3 credential kwargs of that role's session (None: the run's credential for every role)
_engine_roles: Callable[[str], dict[str, str] | None] | None = None
_engine_call = threading.local()


class MotoVersionError(RuntimeError):
    pass


def check_version() -> None:
    if moto.__version__ != MOTO_VERSION:
        raise MotoVersionError(
            f"loupe_local.host.moto_patches is written for moto {MOTO_VERSION}, found {moto.__version__}; "
            "re-check every patch in this module and its tests before changing the pin"
        )


def set_lambda_handler(handler: Callable[[str, Any, bool], tuple[Any, bool]] | None) -> None:
    """handler(function_name, event, asynchronous) -> (payload, errored)."""
    global _lambda_handler
    _lambda_handler = handler


def set_event_target_handler(handler: Callable[[dict[str, Any], dict[str, Any]], None] | None) -> None:
    """handler(target, event) for Lambda and Step Functions targets of matching rules."""
    global _event_target_handler
    _event_target_handler = handler


def set_event_target_filter(check: Callable[[dict[str, Any], str], bool] | None) -> None:
    """check(target, rule ARN) for the SQS and SNS targets moto delivers: False drops that delivery."""
    global _event_target_filter
    _event_target_filter = check


def set_engine_credentials(access_key_id: str | None, secret_access_key: str | None = None) -> None:
    """The credential the ASL engine's service calls sign with (None: moto's own fixed one)."""
    global _engine_credentials
    _engine_credentials = (access_key_id, secret_access_key or "") if access_key_id else None


def set_engine_role_credentials(lookup: Callable[[str], dict[str, str] | None] | None) -> None:
    """``lookup(role_arn)``: the credential (boto3 client kwargs) the ASL engine's service calls for a state with
    that role sign with — the state machine's role, or a Task's ``Credentials.RoleArn``; None or a None answer: the
    run's credential (``set_engine_credentials``)."""
    global _engine_roles
    _engine_roles = lookup


def server_app() -> Any:
    """moto's WSGI application (every service, dispatched by host/auth), as ``moto.server`` serves it, without
    the permissive CORS moto adds to every service's app unless ``MOTO_DISABLE_GLOBAL_CORS`` is set."""
    from moto.moto_server import werkzeug_app
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    # create_backend_app reads this module global each time it builds a service's app
    werkzeug_app.DISABLE_GLOBAL_CORS = True
    return DomainDispatcherApplication(create_backend_app)


def render_input_template(input_template: str | None, input_paths_map: dict[str, str], event: dict[str, Any]) -> Any:
    """An EventBridge target's InputTransformer applied to ``event``, with moto's own template parser."""
    from moto.events.utils import EventTemplateParser

    return EventTemplateParser.parse(
        input_template=input_template or "",
        input_paths_map=input_paths_map,
        event=event,  # type: ignore[arg-type]  # an event as EventBridge delivers it
    )


def parse_request(service: str, method: str, url: str, headers: Any, body: bytes | None) -> tuple[str, dict[str, Any]]:
    """(operation name, input) of an HTTP request to ``service`` (a botocore service name), parsed by moto's
    router and its protocol parser as moto's own responses do. Raises ``LookupError`` when no operation matches."""
    from moto.core.parse import PROTOCOL_PARSERS
    from moto.core.request import Request, determine_request_protocol
    from moto.core.routing import RestRouter, get_router_class, get_service_router
    from moto.core.utils import get_service_model
    from werkzeug.exceptions import HTTPException

    request = Request.from_primitives(method, url, dict(headers), body)
    model = get_service_model(service)
    protocol = determine_request_protocol(model, request.content_type)
    try:
        if get_router_class(model.service_name, protocol) is None and protocol.startswith("rest"):
            operation, uri_params = RestRouter(model).match(request)  # e.g. sagemaker-featurestore-runtime
        else:
            operation, uri_params = get_service_router(service).match(request)
    except HTTPException as exc:
        raise LookupError(f"{service}: {method} {url} matches no operation") from exc
    parsed = PROTOCOL_PARSERS[protocol](operation).parse(
        {
            "method": request.method,
            "values": request.values,
            "headers": request.headers,
            "body": request.data,
            "url_path": request.path,
            "url_params": uri_params,
        }
    )
    return operation.name, dict(parsed)


def apply() -> None:
    global _applied
    if _applied:
        return
    check_version()
    from moto import settings
    from moto.awslambda.models import LambdaFunction
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    # 3. run state machines for real
    settings.get_sf_execution_history_type  # noqa: B018 - must exist in this moto version
    _enable_sfn_execution()
    # 4. AWS SDK integrations
    _patch_sfn_aws_sdk()
    # 5. unnamed executions
    _patch_sfn_execution_names()
    # 6. task-token callbacks
    _patch_sfn_task_success()
    # 7. the engine's service calls
    _patch_sfn_engine_credentials()
    # 8. the attributes a Cognito app client reads by default
    _patch_cognito_read_attributes()
    # 9. bucket policies are evaluated by loupe_local.iam, not by moto's object handlers
    _patch_s3_bucket_permission()
    # 10. one DynamoDB request at a time
    _serialise_dynamodb()
    # 11. the server's service dispatch, decided once per host
    _cache_backend_dispatch()
    # 12. a transaction's rollback copy: each table once
    _copy_each_table_once_per_transaction()

    # 1. Lambda invoke
    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> str | bytes:
        if _lambda_handler is None:
            raise RuntimeError("no in-process Lambda handler registered")
        event = json.loads(body) if body else {}
        inv_type = request_headers.get("x-amz-invocation-type", "RequestResponse")
        asynchronous = inv_type == "Event"
        payload, errored = _lambda_handler(self.function_name, event, asynchronous)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return text.encode("utf-8") if inv_type == "RequestResponse" else text

    LambdaFunction.invoke = invoke

    # 2. EventBridge targets
    original_send = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
        if self.scheduled_expression and not self.event_pattern._pattern:
            return  # a schedule rule has no event pattern and matches no event (moto treats it as match-all)
        ours = [t for t in self.targets if parse_arn(t["Arn"]).service in ("lambda", "states")]
        others = [t for t in self.targets if t not in ours]
        check = _event_target_filter
        if others and check is not None and self.event_pattern.matches_event(original_event):
            others = [
                t for t in others if parse_arn(t["Arn"]).service not in ("sqs", "sns") or check(dict(t), self.arn)
            ]
        if others:  # moto raises NotImplementedError on target types it does not know: hand it only its own
            proxy = copy.copy(self)
            proxy.targets = others
            original_send(proxy, original_event, transform_input)  # type: ignore[arg-type]  # moto's own event dict
        if _event_target_handler is None or not self.event_pattern.matches_event(original_event):
            return
        for target in ours:
            threading.Thread(
                target=_event_target_handler,
                args=(dict(target), dict(original_event)),
                name=f"event-{self.name}",
                daemon=True,
            ).start()

    Rule.send_to_targets = send_to_targets
    _applied = True


def _enable_sfn_execution() -> None:
    """moto reads this configuration per request; the runtime sets it for the whole process."""
    from moto.core import config

    config.default_user_config["stepfunctions"] = {"execute_state_machine": True}


# Exception prefixes of the AWS SDK integrations the stack uses, from the "Exception prefix" column of the Step
# Functions developer guide's "AWS SDK service integrations" table (moto knows only dynamodb and sfn).
AWS_SDK_ERROR_PREFIXES = {
    "s3": "S3",
    "sagemaker": "SageMaker",
    "sns": "Sns",
    "sqs": "Sqs",
    "lambda": "Lambda",
    "iot": "Iot",
    "greengrassv2": "GreengrassV2",
}


def _patch_sfn_aws_sdk() -> None:
    from botocore.response import StreamingBody
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )

    # moto's table maps the lower-cased service name to the prefix; add the documented ones it lacks
    for service, prefix in AWS_SDK_ERROR_PREFIXES.items():
        aws_sdk._SERVICE_ERROR_NAMES.setdefault(service, prefix)

    def text_of(value: Any) -> Any:
        if isinstance(value, StreamingBody):
            # Step Functions returns a streamed member as a string and does not support binary content, so bytes
            # that are not UTF-8 fail the task (States.Runtime) instead of reaching the state mangled.
            data = value.read()
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"the response's streamed member is {len(data)} bytes of binary data; Step Functions returns it "
                    "as a string and does not support binary content"
                ) from exc
        if isinstance(value, dict):
            return {k: text_of(v) for k, v in value.items()}
        if isinstance(value, list):
            return [text_of(v) for v in value]
        return value

    def _normalise_response(
        self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
    ) -> None:
        if isinstance(response, dict):
            response.update(text_of(response))

    aws_sdk.StateTaskServiceAwsSdk._normalise_response = _normalise_response


def _patch_sfn_execution_names() -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: Any,
        state_machine_arn: str,
        name: str | None = None,
        execution_input: Any = None,
        trace_header: Any = None,
    ) -> Any:
        if name:
            self._validate_name(name)  # moto's own StartExecution checks, which its engine's backend skipped
        else:
            name = str(uuid.uuid4())
        return original(self, state_machine_arn, name, execution_input, trace_header)

    StepFunctionsParserBackend.start_execution = start_execution


# "Maximum input or output size for a task, state, or execution: 256 KiB of data as a UTF-8 encoded string"
# (Step Functions service quotas); SendTaskSuccess's output has the same limit.
MAX_PAYLOAD_BYTES = 256 * 1024


def _patch_sfn_task_success() -> None:
    from moto.stepfunctions.parser import api
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.send_task_success

    def send_task_success(self: Any, task_token: str, outcome: str) -> Any:
        size = len((outcome or "").encode("utf-8"))
        if size > MAX_PAYLOAD_BYTES:
            raise api.ValidationException(
                f"1 validation error detected: Value at 'output' failed to satisfy constraint: Member must have "
                f"length less than or equal to {MAX_PAYLOAD_BYTES} (got {size} bytes)",
                "ValidationException",
            )
        try:
            json.loads(outcome)
        except (TypeError, ValueError) as exc:
            raise api.InvalidOutput(f"Invalid Output: not valid JSON: {exc}", "InvalidOutput") from exc
        return original(self, task_token, outcome)

    StepFunctionsParserBackend.send_task_success = send_task_success


class _EngineBoto3:
    """What the ASL engine's ``boto_client_for`` finds as ``boto3``: the real one, with the run's credential
    instead of the fixed ``ak``/``sk`` it passes (when ``set_engine_credentials`` gave one)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._clients: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def client(self, *args: Any, **kwargs: Any) -> Any:
        role_credentials = getattr(_engine_call, "credentials", None)
        if role_credentials is not None:
            kwargs.update(role_credentials)
        elif _engine_credentials is not None:
            kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = _engine_credentials
        # one client per service, region, endpoint, credential and settings: the engine asked for a new one for
        # every Task state (~10 ms of CPU each); boto3's clients are thread-safe, so states share them
        config = kwargs.get("config")
        settings = sorted(getattr(config, "_user_provided_options", {}).items()) if config is not None else None
        key = (args, tuple(sorted((k, v) for k, v in kwargs.items() if k != "config")), repr(settings))
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                if len(self._clients) >= 256:  # role sessions renewed over a long run: old ones go
                    self._clients.clear()
                client = self._clients[key] = self._real.client(*args, **kwargs)
        return client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _patch_sfn_engine_credentials() -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client

    if not isinstance(boto_client.boto3, _EngineBoto3):
        boto_client.boto3 = _EngineBoto3(boto_client.boto3)  # type: ignore[assignment]
    original = boto_client.boto_client_for
    if getattr(original, "loupe_patched", False):
        return

    @functools.wraps(original)
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        # moto passes the state's StateCredentials (its role) and then ignores it; sign as that role's session
        role = getattr(state_credentials, "role_arn", None)
        _engine_call.credentials = _engine_roles(role) if role and _engine_roles is not None else None
        try:
            return original(region, service, state_credentials)
        finally:
            _engine_call.credentials = None

    boto_client_for.loupe_patched = True  # type: ignore[attr-defined]
    boto_client.boto_client_for = boto_client_for
    # the engine's modules imported the name itself: rebind it in each one already imported (later imports read
    # the patched module attribute)
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and getattr(module, "boto_client_for", None) is original:
            module.boto_client_for = boto_client_for  # type: ignore[attr-defined]


# what an app client without ReadAttributes reads: the standard attributes (OpenID Connect's, as Cognito lists them
# in "User pool attributes") and the two verification flags
DEFAULT_READ_ATTRIBUTES = (
    "address",
    "birthdate",
    "email",
    "email_verified",
    "family_name",
    "gender",
    "given_name",
    "locale",
    "middle_name",
    "name",
    "nickname",
    "phone_number",
    "phone_number_verified",
    "picture",
    "preferred_username",
    "profile",
    "updated_at",
    "website",
    "zoneinfo",
)


_DYNAMODB_LOCK = threading.RLock()


def _serialise_dynamodb() -> None:
    """moto's DynamoDB backend is not thread-safe and the local gateway serves requests on many threads: a Query
    summing an item's size while another request updates that item failed with "dictionary changed size during
    iteration" (a 500 to the caller; seen in a clean-clone `make demo`). DynamoDB makes each request atomic on an
    item; serialising moto's DynamoDB requests gives that (each takes milliseconds)."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "loupe_patched", False):
        return

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _DYNAMODB_LOCK:
            return original(self)

    call_action.loupe_patched = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action


def _cache_backend_dispatch() -> None:
    """The host -> backend answer of moto's dispatcher, remembered per dispatcher and host (patch 11)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_backend_for_host
    if getattr(original, "loupe_patched", False):
        return

    @functools.wraps(original)
    def get_backend_for_host(self: Any, host: str | None) -> Any:
        cache: dict[str | None, Any] = self.__dict__.setdefault("_loupe_backend_by_host", {})
        if host not in cache:
            # a virtual-hosted S3 name is part of the host: bounded by the buckets a run makes; and a cache that
            # somehow grew past that starts over rather than growing for ever
            if len(cache) >= _BACKEND_CACHE_SIZE:
                cache.clear()
            cache[host] = original(self, host)
        return cache[host]

    get_backend_for_host.loupe_patched = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host


_BACKEND_CACHE_SIZE = 4096
_transaction = threading.local()


class _TableCopies:
    """What ``moto.dynamodb.models`` finds as its ``copy`` module (patch 12): the real one, except that inside a
    TransactWriteItems a table deep-copied again is the copy already made for that transaction."""

    def __init__(self, real: Any, table_type: type) -> None:
        self._real = real
        self._table_type = table_type

    def deepcopy(self, obj: Any, memo: Any = None) -> Any:
        copies = getattr(_transaction, "copies", None)
        if copies is None or memo is not None or not isinstance(obj, self._table_type):
            return self._real.deepcopy(obj, memo)
        if id(obj) not in copies:
            copies[id(obj)] = (obj, self._real.deepcopy(obj))  # the table itself kept: its id stays its own
        return copies[id(obj)][1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _copy_each_table_once_per_transaction() -> None:
    from moto.dynamodb import models

    original = models.DynamoDBBackend.transact_write_items
    if getattr(original, "loupe_patched", False):
        return
    if not isinstance(models.copy, _TableCopies):
        models.copy = _TableCopies(models.copy, models.Table)  # type: ignore[assignment]

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        _transaction.copies = {}
        try:
            return original(self, transact_items)
        finally:
            _transaction.copies = None

    transact_write_items.loupe_patched = True  # type: ignore[attr-defined]
    models.DynamoDBBackend.transact_write_items = transact_write_items


def _patch_s3_bucket_permission() -> None:
    """moto's object GET/PUT/DELETE refuse (403) whatever a bucket policy Deny names, ignoring its Principal and its
    Condition: the template's ``DenyInsecureTransport`` (aws:SecureTransport false) refused every object call,
    TLS or not, whoever made it. The local IAM check evaluates bucket policies as S3 documents them
    (``loupe_local.iam.resource_policies``); moto's own check answers "no opinion"."""
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self: Any, action: str, resource: str) -> Any:
        return PermissionResult.NEUTRAL

    get_permission.loupe_patched = True  # type: ignore[attr-defined]
    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


def _patch_cognito_read_attributes() -> None:
    from moto.cognitoidp.models import CognitoIdpUserPoolClient

    original = CognitoIdpUserPoolClient.get_readable_fields
    if getattr(original, "loupe_patched", False):
        return

    @functools.wraps(original)
    def get_readable_fields(self: Any) -> list[str]:
        named = self.extended_config.get("ReadAttributes")
        return list(named) if named else list(DEFAULT_READ_ATTRIBUTES)

    get_readable_fields.loupe_patched = True  # type: ignore[attr-defined]
    CognitoIdpUserPoolClient.get_readable_fields = get_readable_fields  # type: ignore[method-assign]


def aws_managed_policy(arn: str) -> dict[str, Any] | None:
    """The document of an AWS managed policy (``arn:aws:iam::aws:policy/...``) from moto's copy of them."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    global _managed
    if _managed is None:
        _managed = json.loads(aws_managed_policies_data)
    item = _managed.get(arn.rsplit("/", 1)[-1])
    return dict(item["Document"]) if item else None


_managed: dict[str, Any] | None = None


def resource_policy(arn: str) -> dict[str, Any] | None:
    """The resource-based policy moto holds for ``arn`` (a function or alias, queue, topic, bucket or object), as
    its Get*Policy call would answer it; None when the resource has none or does not exist. Read from moto's
    backends: the gateway asks for it while it answers a request, so it must not call the gateway itself."""
    parts = arn.split(":", 5)
    if len(parts) != 6:
        return None
    _, _, service, region, account, rest = parts
    text: str | bytes | None = None
    try:
        if service == "lambda" and rest.startswith("function:"):
            from moto.awslambda.models import lambda_backends

            name, _, qualifier = rest[len("function:") :].partition(":")
            wire = json.loads(lambda_backends[account][region].get_policy(name, qualifier or None))
            text = wire["Policy"]
        elif service == "sqs":
            from moto.sqs.models import sqs_backends

            text = sqs_backends[account][region].get_queue(rest).policy
        elif service == "sns":
            from moto.sns.models import sns_backends

            topic = sns_backends[account][region].topics.get(arn)
            text = topic.policy if topic is not None else None
        elif service == "s3":
            from moto.s3.models import s3_backends

            bucket = rest.split("/", 1)[0]
            owner = s3_backends.bucket_accounts.get(bucket)
            backends: Any = s3_backends  # indexed by account, then partition
            text = backends[owner]["aws"].get_bucket_policy(bucket) if owner else None
    except Exception:  # no such resource, or no policy (moto raises for a function without one)
        return None
    if not text:
        return None
    document = json.loads(text)
    return document if isinstance(document, dict) else None
