"""Helpers for the ingest/labeling integration tests: all through the session's local AWS (real S3 puts,
EventBridge, router, handlers, ASL in moto's engine, the Ground Truth and Feature Store stand-ins)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from support.waiting import wait_for

from loupe.ledger import Ledger

pytestmark = pytest.mark.integration


class Env:
    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self.s3 = runtime.client("s3")
        self.sfn = runtime.client("stepfunctions")
        self.raw = runtime.physical("RawBucket")
        self.artifacts = runtime.physical("ArtifactBucket")
        dynamodb = runtime.resource("dynamodb")
        self.ledger = Ledger(dynamodb.Table(runtime.physical("LedgerTable")))
        self.idempotency = dynamodb.Table(runtime.physical("IdempotencyTable"))

    # -- S3 and ledger
    def put_raw(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> str:
        self.s3.put_object(Bucket=self.raw, Key=key, Body=data, Metadata=metadata or {})
        return hashlib.sha256(data).hexdigest()

    def entry_for_key(self, key: str) -> dict[str, Any] | None:
        uri = f"s3://{self.raw}/{key}"
        for status in ("unlabeled", "claimed", "labeled", "rejected"):
            for item in self.ledger.by_status(status):
                if uri in (item.get("source_keys") or []):
                    return item
        return None

    def wait_entry(self, key: str, timeout: float = 30.0) -> dict[str, Any]:
        return wait_for(lambda: self.entry_for_key(key), timeout, f"a ledger entry for {key}")

    def wait_status(self, sha: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
        return wait_for(
            lambda: (e := self.ledger.get(sha)) and e.get("status") == status and e, timeout, f"{sha[:12]} {status}"
        )

    def ingest_calls(self) -> int:
        return self.rt.invoker.find("IngestImageFunction").invocations

    # -- workforce answers
    def answers(self, name: str, answers: dict[str, list[dict[str, int]]]) -> None:
        directory = Path(self.rt.state_dir) / "workforce"
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / f"{name}.jsonl", "w") as fh:
            for sha, boxes in answers.items():
                fh.write(json.dumps({"sha256": sha, "annotations": boxes}) + "\n")

    # -- executions
    def wait_execution(self, arn: str, timeout: float = 60.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            out = self.sfn.describe_execution(executionArn=arn)
            return out if out["status"] != "RUNNING" else None

        return wait_for(done, timeout, f"execution {arn.rsplit(':', 1)[-1]}")

    def labeling_executions(self) -> list[dict[str, Any]]:
        arn = self.rt.arn("LabelingStateMachine")
        return self.sfn.list_executions(stateMachineArn=arn)["executions"]

    def trigger(self, hashes: list[str]) -> dict[str, Any]:
        return self.rt.invoke("LabelingTriggerFunction", {"reason": "manual", "sha256": hashes})


@pytest.fixture(scope="session")
def env(local_aws: Any) -> Env:
    return Env(local_aws)
