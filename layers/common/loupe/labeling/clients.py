""":class:`LabelingClients`, the labeling task worker's module-scope holder (the labeling twin of
:class:`loupe.deployment.clients.AwsClients`): each client is created on first use (a task that writes a manifest
pays for S3 alone) and kept for the warm container. The clients' ``Protocol``s are the domain's common ones
(:mod:`loupe.aws_clients`); a test sets the attributes it needs to fakes, and an attribute it leaves alone is made
only if a task reaches it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from loupe.aws_clients import S3, FeatureStoreRuntime, SageMakerLabeling, StepFunctions
from loupe.labeling.config import LabelingConfig
from loupe.settings import SettingsError

if TYPE_CHECKING:
    from loupe.labeling.task_store import TaskStore
    from loupe.ledger import Ledger
    from loupe.settings import Settings


class LabelingClients:
    """The clients and stores of the labeling tasks, each created on first use."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        settings.require("raw_bucket", "artifact_bucket", "ledger_table")
        self.settings = settings
        self.cfg = LabelingConfig.from_settings(settings)
        self.clock = clock

    @staticmethod
    def _client(name: str) -> Any:
        import boto3

        return boto3.client(name)

    @cached_property
    def s3(self) -> S3:
        return self._client("s3")

    @cached_property
    def sagemaker(self) -> SageMakerLabeling:
        return self._client("sagemaker")

    @cached_property
    def featurestore(self) -> FeatureStoreRuntime:
        return self._client("sagemaker-featurestore-runtime")

    @cached_property
    def sfn(self) -> StepFunctions:
        return self._client("stepfunctions")

    @cached_property
    def ledger(self) -> Ledger:
        from loupe.ledger import Ledger

        return Ledger.from_name(str(self.settings.ledger_table))

    @cached_property
    def app_store(self) -> TaskStore | None:
        """The labeling app's table (LabelingService=Loupe); None where the function has no LABELING_TASKS_TABLE."""
        if not self.settings.labeling_tasks_table:
            return None
        from loupe.aws_clients import lazy_table
        from loupe.labeling.task_store import TaskStore

        return TaskStore(lazy_table(self.settings.labeling_tasks_table))

    def require_app_store(self) -> TaskStore:
        if self.app_store is None:
            raise SettingsError("missing environment variable(s): LABELING_TASKS_TABLE")
        return self.app_store
