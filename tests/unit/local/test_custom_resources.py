"""How the local provisioner reads a custom resource provider's answer (CloudFormation User Guide, "Custom resource
response objects") and when it gives up waiting; the provider here is a fake that answers through the hooks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loupe_local.host import custom_resources as cr
from loupe_local.host.provisioner import Provisioner
from loupe_local.provisioned import Provisioned
from loupe_local.template import SamApp, TemplateError

TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:publisher"
STACK = "arn:aws:cloudformation:us-east-1:123456789012:stack/loupe/local"


class FakeProvider:
    """Answers each request with ``answer(request)`` (bytes, or None for no answer), as the function would PUT it."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.waits: list[float] = []
        self._bodies: dict[str, bytes | None] = {}

    def hooks(self) -> cr.ProviderHooks:
        return cr.ProviderHooks(invoke_async=self.invoke, expect=lambda key: None, wait=self.wait, presign=self.presign)

    def presign(self, key: str, expires: int) -> str:
        return f"http://127.0.0.1:1/{key}?X-Amz-Expires={expires}"

    def invoke(self, token: str, request: dict[str, Any]) -> None:
        self.requests.append(request)
        key = request["ResponseURL"].split("/", 3)[3].split("?")[0]
        self._bodies[key] = self.answer(request)

    def wait(self, key: str, timeout: float) -> bytes | None:
        self.waits.append(timeout)
        return self._bodies.get(key)


def answer(**fields: Any) -> Any:
    def make(request: dict[str, Any]) -> bytes:
        base = {k: request[k] for k in ("StackId", "RequestId", "LogicalResourceId")}
        return json.dumps({**base, **fields}).encode()

    return make


def create(provider: FakeProvider, **props: Any) -> Any:
    return cr.create(
        "Thing",
        "Custom::Thing",
        {"ServiceToken": TOKEN, "Size": "3", **props},
        stack_id=STACK,
        hooks=provider.hooks(),
        max_wait=30,
    )


def test_success_makes_the_physical_id_the_ref_and_data_the_attributes() -> None:
    provider = FakeProvider(answer(Status="SUCCESS", PhysicalResourceId="thing-1", Data={"Url": "s3://b/k"}))
    made = create(provider)
    assert (made.ref, made.attrs) == ("thing-1", {"Url": "s3://b/k"})
    [request] = provider.requests
    assert request["RequestType"] == "Create" and request["ServiceToken"] == TOKEN
    assert request["ResourceProperties"] == {"ServiceToken": TOKEN, "Size": "3"}
    assert (request["StackId"], request["LogicalResourceId"], request["ResourceType"]) == (
        STACK,
        "Thing",
        "Custom::Thing",
    )
    assert request["ResponseURL"].endswith("?X-Amz-Expires=7200")


def test_failed_is_the_stack_failure_with_the_providers_reason() -> None:
    provider = FakeProvider(answer(Status="FAILED", Reason="bucket is gone", PhysicalResourceId="x"))
    with pytest.raises(cr.CustomResourceFailed) as failed:
        create(provider)
    request_id = provider.requests[0]["RequestId"]
    assert failed.value.reason == (
        f"Received response status [FAILED] from custom resource. Message returned: bucket is gone "
        f"(RequestId: {request_id})"
    )
    assert str(failed.value).startswith("Thing (Custom::Thing) CREATE_FAILED: ")


def test_no_answer_fails_after_the_service_timeout_or_the_local_bound() -> None:
    provider = FakeProvider(lambda request: None)
    with pytest.raises(cr.CustomResourceFailed, match=r"did not receive a response .* requestId \["):
        create(provider, ServiceTimeout="5")
    with pytest.raises(cr.CustomResourceFailed):
        create(provider)  # default ServiceTimeout 3600 s: the local bound (max_wait) applies
    assert provider.waits == [5.0, 30.0]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"Status": "OK", "PhysicalResourceId": "p"}, "Status must be SUCCESS or FAILED"),
        ({"Status": "FAILED"}, "a FAILED response needs a Reason"),
        ({"Status": "SUCCESS"}, "Invalid PhysicalResourceId"),
        ({"Status": "SUCCESS", "PhysicalResourceId": "p" * 1025}, "Invalid PhysicalResourceId"),
        ({"Status": "SUCCESS", "PhysicalResourceId": "p", "RequestId": "another"}, "RequestId 'another'"),
        ({"Status": "SUCCESS", "PhysicalResourceId": "p", "Data": ["x"]}, "Data must be a JSON object"),
        ({"Status": "SUCCESS", "PhysicalResourceId": "p", "Data": {"Big": "x" * 4096}}, "too long"),
    ],
)
def test_a_response_cloudformation_cannot_use_fails_the_resource(fields: dict[str, Any], problem: str) -> None:
    provider = FakeProvider(answer(**fields))
    with pytest.raises(cr.CustomResourceFailed, match=problem):
        create(provider)


def test_a_body_that_is_not_json_fails_the_resource() -> None:
    with pytest.raises(cr.CustomResourceFailed, match="not valid JSON"):
        create(FakeProvider(lambda request: b"SUCCESS"))


@pytest.mark.parametrize("token", ["arn:aws:sns:us-east-1:123456789012:provider", ""])
def test_a_provider_that_is_not_a_lambda_function_is_refused_by_name(token: str) -> None:
    provider = FakeProvider(answer(Status="SUCCESS", PhysicalResourceId="p"))
    with pytest.raises(cr.CustomResourceFailed, match="is not a Lambda function ARN"):
        cr.create("Thing", "Custom::Thing", {"ServiceToken": token}, stack_id=STACK, hooks=provider.hooks(), max_wait=1)
    assert provider.requests == []


def test_a_resource_that_depends_on_a_custom_resource_is_refused_before_anything_is_created() -> None:
    resources = {
        "Thing": {"Type": "Custom::Thing", "Properties": {"ServiceToken": TOKEN}},
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"DisplayName": {"Fn::GetAtt": ["Thing", "Url"]}}},
    }
    app = SamApp(root=None, original={}, transformed={"Resources": resources})  # type: ignore[arg-type]

    class NoAws:
        def client(self, service: str) -> Any:
            raise AssertionError(f"{service} called: nothing may be created")

    with pytest.raises(TemplateError, match="Topic depends on the custom resource Thing"):
        Provisioner(app, NoAws(), "loupe", "us-east-1", {}).provision()


def test_custom_resources_wait_for_provision_custom_in_creation_order() -> None:
    resources = {
        "Second": {"Type": "Custom::Thing", "Properties": {"ServiceToken": TOKEN, "After": {"Ref": "First"}}},
        "First": {"Type": "AWS::CloudFormation::CustomResource", "Properties": {"ServiceToken": TOKEN}},
    }
    app = SamApp(root=None, original={}, transformed={"Resources": resources})  # type: ignore[arg-type]
    provisioner = Provisioner(app, object(), "loupe", "us-east-1", {})
    done = provisioner.provision()
    assert done["First"].skipped and done["Second"].skipped
    made: list[tuple[str, dict[str, Any]]] = []

    def fake_create(logical_id: str, resource_type: str, props: dict[str, Any]) -> Any:
        made.append((logical_id, props))
        return Provisioned(logical_id, resource_type, f"{logical_id}-id")

    provisioner.provision_custom(fake_create)
    assert made == [("First", {"ServiceToken": TOKEN}), ("Second", {"ServiceToken": TOKEN, "After": "First-id"})]
    assert done["Second"].ref == "Second-id" and not done["Second"].skipped
