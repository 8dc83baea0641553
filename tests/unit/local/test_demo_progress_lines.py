"""Progress lines of long demo stages: printed when they say something new, repeated only as a slow heartbeat."""

from __future__ import annotations

import pytest

from loupe_local.demo import context as demo_context
from loupe_local.demo.context import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_tick_prints_only_new_text_and_repeats_unchanged_text_as_a_heartbeat(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    monkeypatch.setattr(demo_context.time, "monotonic", clock)
    progress = Progress()
    for step, text in enumerate(
        ["epoch 3/40", "epoch 3/40", "epoch 3/40", "epoch 4/40", "epoch 4/40", "labeling RUNNING"]
    ):
        clock.t = 1000.0 + 5.0 * (step + 1)
        progress.tick(text)
    said = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert said == ["  … epoch 3/40", "  … epoch 4/40", "  … labeling RUNNING"]

    clock.t += 30.0  # unchanged for less than the heartbeat: nothing
    progress.tick("labeling RUNNING")
    assert capsys.readouterr().out == ""
    clock.t += Progress.REPEAT_AFTER  # unchanged for longer: said again, marked as unchanged
    progress.tick("labeling RUNNING")
    out = capsys.readouterr().out
    assert "still labeling RUNNING (no change in 90s)" in out


def test_a_tick_waits_its_interval_even_when_the_text_changes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    monkeypatch.setattr(demo_context.time, "monotonic", clock)
    progress = Progress()
    progress.tick("uploaded 20/200", every=2)
    clock.t += 1.0
    progress.tick("uploaded 40/200", every=2)
    clock.t += 1.5
    progress.tick("uploaded 60/200", every=2)
    said = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert said == ["  … uploaded 20/200", "  … uploaded 60/200"]
