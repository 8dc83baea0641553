"""The AWS clients Loupe's labeling, ingest and feedback code takes, as ``Protocol``s naming only the methods it
calls (keyword arguments as boto3 takes them). A boto3 client satisfies them, and so does a test's fake.

Handlers hold their clients at module scope, each created on first use (:func:`lazy_client`): a warm container
reuses them, and an event that needs one client (or none: an ignored event) does not pay at cold start for the
others. Creating a botocore client costs 50-200 ms (``benchmarks/cold_start.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol


class _Lazy:
    """The object ``factory()`` returns, made on the first attribute access, then the same object every time."""

    def __init__(self, factory: Callable[[], Any], label: str) -> None:
        self._factory = factory
        self._label = label
        self._made: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._made is None:
            with self._lock:
                if self._made is None:
                    self._made = self._factory()
        return self._made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __repr__(self) -> str:
        return f"<lazy {self._label}, {'made' if self._made is not None else 'not made yet'}>"


def lazy_client(service: str, **config: Any) -> Any:
    """``boto3.client(service)``, created on first use (``config``: botocore ``Config`` options, e.g.
    ``signature_version="s3v4"`` for presigned URLs signed with SigV4 rather than the legacy SigV2)."""

    def make() -> Any:
        import boto3

        if config:
            from botocore.config import Config

            return boto3.client(service, config=Config(**config))
        return boto3.client(service)

    return _Lazy(make, f"boto3 client {service!r}")


def lazy_table(name: str) -> Any:
    """``boto3.resource("dynamodb").Table(name)``, created on first use."""

    def make() -> Any:
        import boto3

        return boto3.resource("dynamodb").Table(name)

    return _Lazy(make, f"DynamoDB table {name!r}")


class S3(Protocol):
    def get_object(self, **kwargs: Any) -> Any: ...
    def put_object(self, **kwargs: Any) -> Any: ...
    def head_object(self, **kwargs: Any) -> Any: ...
    def copy_object(self, **kwargs: Any) -> Any: ...


class SageMakerLabeling(Protocol):
    """The Ground Truth part of the SageMaker client."""

    def create_labeling_job(self, **kwargs: Any) -> Any: ...
    def describe_labeling_job(self, **kwargs: Any) -> Any: ...
    def stop_labeling_job(self, **kwargs: Any) -> Any: ...


class SageMakerRegistry(Protocol):
    """The model-registry part of the SageMaker client."""

    def describe_model_package(self, **kwargs: Any) -> Any: ...
    def list_model_packages(self, **kwargs: Any) -> Any: ...
    def update_model_package(self, **kwargs: Any) -> Any: ...


class StepFunctions(Protocol):
    def start_execution(self, **kwargs: Any) -> Any: ...
    def describe_execution(self, **kwargs: Any) -> Any: ...
    def send_task_success(self, **kwargs: Any) -> Any: ...
    def send_task_failure(self, **kwargs: Any) -> Any: ...


class FeatureStoreRuntime(Protocol):
    def put_record(self, **kwargs: Any) -> Any: ...


class EventBridge(Protocol):
    def put_events(self, **kwargs: Any) -> Any: ...


class IoT(Protocol):
    def get_paginator(self, operation_name: str) -> Any: ...
    def describe_thing_group(self, **kwargs: Any) -> Any: ...
    def list_things_in_thing_group(self, **kwargs: Any) -> Any: ...
    def describe_job(self, **kwargs: Any) -> Any: ...
    def list_job_executions_for_job(self, **kwargs: Any) -> Any: ...
    def create_thing_group(self, **kwargs: Any) -> Any: ...
    def add_thing_to_thing_group(self, **kwargs: Any) -> Any: ...
    def remove_thing_from_thing_group(self, **kwargs: Any) -> Any: ...


class GreengrassV2(Protocol):
    def list_components(self, **kwargs: Any) -> Any: ...
    def list_component_versions(self, **kwargs: Any) -> Any: ...
    def get_component(self, **kwargs: Any) -> Any: ...
    def describe_component(self, **kwargs: Any) -> Any: ...
    def create_component_version(self, **kwargs: Any) -> Any: ...
    def list_deployments(self, **kwargs: Any) -> Any: ...
    def get_deployment(self, **kwargs: Any) -> Any: ...
    def create_deployment(self, **kwargs: Any) -> Any: ...
    def list_effective_deployments(self, **kwargs: Any) -> Any: ...
    def list_core_devices(self, **kwargs: Any) -> Any: ...
    def get_core_device(self, **kwargs: Any) -> Any: ...


class DynamoDBTable(Protocol):
    """A boto3 ``dynamodb.Table`` resource (``meta.client`` is its low-level client, for BatchGetItem)."""

    meta: Any
    name: str

    def get_item(self, **kwargs: Any) -> Any: ...
    def put_item(self, **kwargs: Any) -> Any: ...
    def update_item(self, **kwargs: Any) -> Any: ...
    def delete_item(self, **kwargs: Any) -> Any: ...
    def query(self, **kwargs: Any) -> Any: ...
    def scan(self, **kwargs: Any) -> Any: ...
    def batch_writer(self, overwrite_by_pkeys: list[str] | None = None) -> Any: ...
