"""The AWS clients the deployment domain takes: ``Protocol``s naming only the calls it makes, and
:class:`AwsClients`, the handlers' module-scope holder that creates each client on first use (a task that needs
two clients pays for two, not five) and keeps it for the warm container. boto3 itself is imported with the
module, in the function's init phase.

boto3 clients satisfy these protocols; the tests hand in small fakes with the same methods.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import boto3

if TYPE_CHECKING:
    from loupe.deployment.store import DeploymentsStore
    from loupe.settings import Settings


class SageMaker(Protocol):
    def describe_model_package(self, *, ModelPackageName: str) -> dict[str, Any]: ...  # noqa: N803 - the API's name

    def list_model_packages(self, **kwargs: Any) -> dict[str, Any]: ...


class S3(Protocol):
    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...  # noqa: N803

    def put_object(self, **kwargs: Any) -> dict[str, Any]: ...


class Iot(Protocol):
    def describe_thing_group(self, *, thingGroupName: str) -> dict[str, Any]: ...  # noqa: N803

    def list_things_in_thing_group(self, **kwargs: Any) -> dict[str, Any]: ...

    def list_job_executions_for_job(self, **kwargs: Any) -> dict[str, Any]: ...


class GreengrassV2(Protocol):
    def list_components(self, **kwargs: Any) -> dict[str, Any]: ...

    def list_component_versions(self, **kwargs: Any) -> dict[str, Any]: ...

    def get_component(self, **kwargs: Any) -> dict[str, Any]: ...

    def describe_component(self, *, arn: str) -> dict[str, Any]: ...

    def create_component_version(self, **kwargs: Any) -> dict[str, Any]: ...

    def list_deployments(self, **kwargs: Any) -> dict[str, Any]: ...

    def get_deployment(self, *, deploymentId: str) -> dict[str, Any]: ...  # noqa: N803

    def create_deployment(self, **kwargs: Any) -> dict[str, Any]: ...

    def list_effective_deployments(self, **kwargs: Any) -> dict[str, Any]: ...


class StepFunctions(Protocol):
    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]: ...  # noqa: N803, A002


class DynamoTable(Protocol):
    """A boto3 ``dynamodb.Table`` resource; ``meta.client`` is its low-level client (BatchGetItem)."""

    meta: Any
    name: str

    def put_item(self, **kwargs: Any) -> dict[str, Any]: ...

    def get_item(self, **kwargs: Any) -> dict[str, Any]: ...

    def delete_item(self, **kwargs: Any) -> dict[str, Any]: ...

    def query(self, **kwargs: Any) -> dict[str, Any]: ...

    def batch_writer(self, overwrite_by_pkeys: list[str] | None = None) -> Any: ...


class AwsClients:
    """The clients of one handler, each created on first use (module scope: reused while the container is warm)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @staticmethod
    def _client(name: str) -> Any:
        return boto3.client(name)

    @cached_property
    def sagemaker(self) -> SageMaker:
        return self._client("sagemaker")

    @cached_property
    def s3(self) -> S3:
        return self._client("s3")

    @cached_property
    def iot(self) -> Iot:
        return self._client("iot")

    @cached_property
    def greengrass(self) -> GreengrassV2:
        return self._client("greengrassv2")

    @cached_property
    def stepfunctions(self) -> StepFunctions:
        return self._client("stepfunctions")

    @cached_property
    def store(self) -> DeploymentsStore:
        from loupe.deployment.store import DeploymentsStore

        return DeploymentsStore.from_name(self.settings.deployments_table or "")
