""":class:`AwsClients`, the deployment handlers' module-scope holder that creates each client on first use (a task
that needs two clients pays for two, not five) and keeps it for the warm container. The clients' ``Protocol``s
are the domain's common ones (:mod:`loupe.aws_clients`).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3

from loupe.aws_clients import S3, GreengrassV2, IoT, SageMakerRegistry, StepFunctions

if TYPE_CHECKING:
    from loupe.deployment.store import DeploymentsStore
    from loupe.ledger import Ledger
    from loupe.settings import Settings


class AwsClients:
    """The clients of one handler, each created on first use (module scope: reused while the container is warm)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @staticmethod
    def _client(name: str) -> Any:
        return boto3.client(name)

    @cached_property
    def sagemaker(self) -> SageMakerRegistry:
        return self._client("sagemaker")

    @cached_property
    def s3(self) -> S3:
        return self._client("s3")

    @cached_property
    def iot(self) -> IoT:
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

    @cached_property
    def ledger(self) -> Ledger:
        """The image ledger, read by the canary's verdict (labeled frames of both models)."""
        from loupe.deployment.errors import DeploymentError
        from loupe.ledger import Ledger

        if not self.settings.ledger_table:
            raise DeploymentError("missing configuration: LEDGER_TABLE (the canary reads its labeled frames there)")
        return Ledger.from_name(self.settings.ledger_table)
