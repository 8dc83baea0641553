"""Custom resources, created locally the way CloudFormation creates them.

CloudFormation creates a custom resource (``Custom::<Name>`` or ``AWS::CloudFormation::CustomResource``) after
the resources it depends on, by invoking its ``ServiceToken`` Lambda function **asynchronously** with a request
object, and then waits for the provider to PUT a response object to the request's presigned ``ResponseURL``
(Lambda Developer Guide, "Using AWS Lambda with AWS CloudFormation"; CloudFormation User Guide, "Custom
resources", "Custom resource request objects", "Custom resource response objects"). ``SUCCESS`` creates the
resource: its ``PhysicalResourceId`` is its Ref and ``Data``'s names are its GetAtt attributes. ``FAILED``, or no
answer within the wait (``ServiceTimeout``, 1-3600 s, default 3600), fails the resource and the stack create
rolls back. Locally the function runs through the runtime's asynchronous invoke (its EventInvokeConfig applies and
it runs under its own role session, like every function), the response URL is served by
:class:`loupe_local.standins.cloudformation.CustomResourceResponses`, and the wait is bounded by
``max_wait`` seconds. Only ``Create`` is sent: the local stack is created, never updated or deleted in place.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from loupe_local.provisioned import Provisioned
from loupe_local.template import TemplateError

log = logging.getLogger("loupe_local.provision")

CUSTOM_TYPE = "AWS::CloudFormation::CustomResource"
RESPONSE_LIMIT = 4096  # "The total size of the response body can't exceed 4096 bytes."
PHYSICAL_ID_LIMIT = 1024  # PhysicalResourceId: "can be up to 1 KB in size"
DEFAULT_SERVICE_TIMEOUT = 3600  # AWS::CloudFormation::CustomResource ServiceTimeout: default 3600 seconds


def is_custom(resource_type: str) -> bool:
    return resource_type == CUSTOM_TYPE or resource_type.startswith("Custom::")


class CustomResourceFailed(TemplateError):
    """The stack create failed on a custom resource; the message is its status reason, as CloudFormation's stack
    events show it."""

    def __init__(self, logical_id: str, resource_type: str, reason: str) -> None:
        super().__init__(f"{logical_id} ({resource_type}) CREATE_FAILED: {reason}")
        self.logical_id = logical_id
        self.reason = reason


@dataclass(frozen=True)
class ProviderHooks:
    """What creating a custom resource needs of the local AWS.

    ``invoke_async(function_arn, event)``: Lambda's asynchronous invoke (raises when the invoke itself is
    refused); ``expect(key)`` / ``wait(key, timeout)``: the response URL's stand-in; ``presign(key, expires)``:
    the presigned PUT URL of ``key``."""

    invoke_async: Callable[[str, dict[str, Any]], Any]
    expect: Callable[[str], None]
    wait: Callable[[str, float], bytes | None]
    presign: Callable[[str, int], str]


def request_object(
    *,
    stack_id: str,
    logical_id: str,
    resource_type: str,
    properties: Mapping[str, Any],
    request_id: str,
    response_url: str,
) -> dict[str, Any]:
    """The Create request CloudFormation sends ("Custom resource request objects")."""
    return {
        "RequestType": "Create",
        "ServiceToken": properties["ServiceToken"],
        "ResponseURL": response_url,
        "StackId": stack_id,
        "RequestId": request_id,
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "ResourceProperties": dict(properties),
    }


def read_response(body: bytes, request: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(status, physical id or reason, data)`` of a response object; raises ValueError naming what is wrong
    with it (CloudFormation fails the resource on a response it cannot use)."""
    if len(body) > RESPONSE_LIMIT:
        raise ValueError(f"Response object is too long ({len(body)} bytes; the limit is {RESPONSE_LIMIT})")
    try:
        response = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"Response object is not valid JSON: {exc}") from exc
    if not isinstance(response, dict):
        raise ValueError("Response object is not a JSON object")
    status = response.get("Status")
    if status not in ("SUCCESS", "FAILED"):
        raise ValueError(f"Invalid response object: Status must be SUCCESS or FAILED, not {status!r}")
    for name in ("StackId", "RequestId", "LogicalResourceId"):
        if response.get(name) != request[name]:
            raise ValueError(f"Invalid response object: {name} {response.get(name)!r} is not the request's")
    if status == "FAILED":
        reason = response.get("Reason")
        if not isinstance(reason, str) or not reason:
            raise ValueError("Invalid response object: a FAILED response needs a Reason")
        return status, reason, {}
    physical = response.get("PhysicalResourceId")
    if not isinstance(physical, str) or not physical or len(physical.encode()) > PHYSICAL_ID_LIMIT:
        raise ValueError("Invalid PhysicalResourceId: a non-empty string of at most 1 KB is required")
    data = response.get("Data") or {}
    if not isinstance(data, dict):
        raise ValueError("Invalid response object: Data must be a JSON object")
    return status, physical, data


def create(
    logical_id: str,
    resource_type: str,
    properties: Mapping[str, Any],
    *,
    stack_id: str,
    hooks: ProviderHooks,
    max_wait: float,
) -> Provisioned:
    """Create one custom resource; raises :class:`CustomResourceFailed` with CloudFormation's status reason."""
    token = str(properties.get("ServiceToken", ""))
    if ":lambda:" not in token or ":function:" not in token:
        # an SNS topic is the other documented provider; nothing reads one locally
        raise CustomResourceFailed(
            logical_id,
            resource_type,
            f"ServiceToken {token!r} is not a Lambda function ARN (locally the only provider)",
        )
    timeout = properties.get("ServiceTimeout", DEFAULT_SERVICE_TIMEOUT)
    try:
        service_timeout = int(timeout)
    except (TypeError, ValueError):
        service_timeout = 0
    if not 1 <= service_timeout <= DEFAULT_SERVICE_TIMEOUT:
        raise CustomResourceFailed(
            logical_id, resource_type, f"ServiceTimeout must be an integer from 1 to 3600, not {timeout!r}"
        )
    request_id = str(uuid.uuid4())
    key = f"{logical_id}/{request_id}"
    # CloudFormation's response URLs stay valid for two hours (longer than its longest wait)
    response_url = hooks.presign(key, 2 * DEFAULT_SERVICE_TIMEOUT)
    request = request_object(
        stack_id=stack_id,
        logical_id=logical_id,
        resource_type=resource_type,
        properties=properties,
        request_id=request_id,
        response_url=response_url,
    )
    hooks.expect(key)
    try:
        hooks.invoke_async(token, request)
    except Exception as exc:  # the invoke itself was refused (no such function)
        hooks.wait(key, 0)
        raise CustomResourceFailed(logical_id, resource_type, f"could not invoke {token}: {exc}") from exc
    log.info("custom resource %s: waiting for %s's response", logical_id, token.rsplit(":", 1)[-1])
    body = hooks.wait(key, min(float(service_timeout), max_wait))
    if body is None:
        raise CustomResourceFailed(
            logical_id,
            resource_type,
            "CloudFormation did not receive a response from your Custom Resource. Please check your logs for "
            f"requestId [{request_id}].",
        )
    try:
        status, value, data = read_response(body, request)
    except ValueError as exc:
        raise CustomResourceFailed(logical_id, resource_type, str(exc)) from exc
    if status == "FAILED":
        raise CustomResourceFailed(
            logical_id,
            resource_type,
            f"Received response status [FAILED] from custom resource. Message returned: {value} "
            f"(RequestId: {request_id})",
        )
    return Provisioned(logical_id, resource_type, value, attrs={str(k): v for k, v in data.items()})


def runtime_hooks(
    session: Any, endpoint: str, invoke_async: Callable[[str, dict[str, Any]], Any], responses: Any
) -> ProviderHooks:
    """A local runtime's hooks: the provider invoked asynchronously, its answer awaited by the response stand-in
    (``responses``: :class:`loupe_local.standins.cloudformation.CustomResourceResponses`) at a URL presigned by the
    local S3 (``session``'s S3 at ``endpoint``, SigV4), as CloudFormation presigns its response URL."""
    from botocore.config import Config

    from loupe_local.standins.cloudformation import RESPONSE_BUCKET

    presigner = session.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))

    def presign(key: str, expires: int) -> str:
        return str(
            presigner.generate_presigned_url(
                "put_object", Params={"Bucket": RESPONSE_BUCKET, "Key": key}, ExpiresIn=expires
            )
        )

    return ProviderHooks(invoke_async=invoke_async, expect=responses.expect, wait=responses.wait, presign=presign)
