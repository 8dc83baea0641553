"""``loupe local status`` prints the loop as the read-only observer sees it."""

from __future__ import annotations

from typing import Any

import pytest

from loupe_local.cli import _print_loop


class FakeObserver:
    def ledger_totals(self) -> dict[str, int]:
        return {"labeled": 36, "unlabeled": 4}

    def dataset_versions(self) -> list[dict[str, Any]]:
        return [{"version": 2, "counts": {"images": 50}}, {"version": 1, "counts": {"images": 36}}]

    def executions(self) -> list[dict[str, Any]]:
        return [
            {"kind": "Training", "name": "t-2", "status": "RUNNING"},
            {"kind": "Labeling", "name": "l-1", "status": "SUCCEEDED"},
        ]

    def packages(self, with_cards: bool = True) -> list[dict[str, Any]]:
        return [{"version": 1, "approval": "Approved"}]

    def devices(self) -> list[dict[str, Any]]:
        return [{"thing": "loupe-device-1", "status": "HEALTHY", "serving": "1", "deployment": {"status": "SUCCEEDED"}}]

    def deployments(self, limit: int = 20) -> list[dict[str, Any]]:
        return [{"model_version": "1", "outcome": "COMPLETED", "reason": ""}]


def test_status_prints_what_the_observer_sees(capsys: pytest.CaptureFixture[str]) -> None:
    _print_loop(FakeObserver())
    out = capsys.readouterr().out
    assert "ledger             {'labeled': 36, 'unlabeled': 4}" in out
    assert "datasets           v2 (50 images), v1 (36 images)" in out
    assert "running            Training t-2" in out
    assert "model package 1: Approved" in out
    assert "device loupe-device-1: HEALTHY, serving model 1, deployment SUCCEEDED" in out
    assert "deployment of model 1: COMPLETED" in out
