"""Who labels in ``loupe demo``: the stack's labeling app by default (the template's LabelingService, no Ground
Truth customer flag), the Ground Truth stand-in as an existing customer with ``--labeling-service GroundTruth`` (the
way back); ``--label manual`` labels in the console app, which is the labeling app's."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from loupe_local.demo import command as demo
from loupe_local.demo import stages as demo_stages
from loupe_local.demo.context import DemoConfig, DemoContext


class Started(Exception):
    """Raised by the fake runtime's start: the demo's setup got as far as starting the local AWS."""


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers())
    return parser.parse_args(["demo", *argv])


def config_of(monkeypatch: pytest.MonkeyPatch, *argv: str) -> DemoConfig:
    seen: list[DemoConfig] = []

    def run(self: demo.Demo) -> dict[str, Any]:
        seen.append(self.cfg)
        return {"wall_seconds": 1, "models": [], "devices": [], "result": "complete"}

    monkeypatch.setattr(demo.Demo, "run", run)
    assert demo._cmd(parsed(*argv)) == 0
    (cfg,) = seen
    return cfg


@pytest.mark.parametrize(
    ("argv", "service"),
    [
        ((), "Loupe"),
        (("--labeling-service", "GroundTruth"), "GroundTruth"),
        (("--label", "manual"), "Loupe"),  # the person labels in the console app (before: Ground Truth's queue)
    ],
)
def test_who_labels(monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], service: str) -> None:
    assert config_of(monkeypatch, "--quick", *argv).labeling_service == service


def test_manual_labeling_with_ground_truth_is_refused_with_the_way_to_do_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The console app is the labeling app's: Ground Truth's manual queue has no page any more."""
    monkeypatch.setattr(demo.Demo, "run", lambda self: pytest.fail("the demo ran"))
    assert demo._cmd(parsed("--quick", "--label", "manual", "--labeling-service", "GroundTruth")) == 2
    assert "without --labeling-service GroundTruth" in capsys.readouterr().out


@pytest.mark.parametrize(("service", "customer"), [("Loupe", False), ("GroundTruth", True)])
def test_the_local_stack_gets_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: str, customer: bool
) -> None:
    """Before, the demo always deployed LabelingService=GroundTruth as a Ground Truth customer."""
    import loupe_local.host.runtime

    made: list[dict[str, Any]] = []

    class FakeRuntime:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        def start(self) -> Any:
            raise Started

    monkeypatch.setattr(loupe_local.host.runtime, "LocalRuntime", FakeRuntime)
    monkeypatch.delenv("LOUPE_STATE_DIR", raising=False)
    cfg = DemoConfig.quick_config(tmp_path / "out")
    cfg.labeling_service = service
    ctx = DemoContext(cfg, tmp_path)
    with pytest.raises(Started):
        demo_stages.setup(ctx)
    monkeypatch.delenv("LOUPE_STATE_DIR", raising=False)
    (kwargs,) = made
    assert kwargs["groundtruth_customer"] is customer
    # the labeling app is the template's default: the demo names the service only to go back to Ground Truth
    assert kwargs["parameters"].get("LabelingService", "Loupe") == service
    assert ("LabelingService" in kwargs["parameters"]) is customer
