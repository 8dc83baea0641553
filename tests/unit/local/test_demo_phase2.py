"""The demo's phase 2 and report: the cameras' pace lets the drift alarm see the stream, labeling is credited to
the signal that started it (the schedule only as a named last resort), and the report's pictures show the boxes a
device reports (the deployed confidence threshold, the edge's NMS)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from support.edge_helpers import brightness_for, grey_png, write_model

from loupe_local.demo import report
from loupe_local.demo import stages as demo_stages
from loupe_local.demo.command import Demo, DemoConfig


def test_the_cameras_slow_down_so_the_stream_spans_most_of_an_alarm_period() -> None:
    # 33 real photos per device and 30 s alarm periods: 1.8 frames/s, an 18 s stream
    rate = demo_stages.stream_rate(33, max_rate=4.0, alarm_period=30.0)
    assert rate == pytest.approx(33 / 18)
    assert 33 / rate == pytest.approx(0.6 * 30)
    assert demo_stages.stream_rate(120, max_rate=4.0, alarm_period=30.0) == 4.0  # long enough at full speed
    assert demo_stages.stream_rate(0, max_rate=4.0, alarm_period=30.0) == 4.0


class FakeSfn:
    def __init__(self) -> None:
        self.executions: list[dict[str, Any]] = [{"executionArn": "arn:phase1", "status": "SUCCEEDED"}]
        self.inputs: dict[str, str] = {"arn:phase1": json.dumps({"reason": "threshold"})}

    def list_executions(self, stateMachineArn: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"executions": list(self.executions)}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        return {"input": self.inputs[executionArn]}


class FakeObserver:
    def __init__(self, sfn: FakeSfn) -> None:
        self.sfn = sfn

    def state_machine_executions(self, logical_id: str) -> list[dict[str, Any]]:
        assert logical_id == "LabelingStateMachine"
        return self.sfn.list_executions(stateMachineArn="labeling")["executions"]

    def ledger_totals(self) -> dict[str, int]:
        return {"unlabeled": 3}

    def alarm_state(self, logical_id: str) -> str:
        return "OK"


def demo_with(tmp_path: Path, sfn: FakeSfn, fired: list[str]) -> tuple[Demo, list[str]]:
    demo = Demo(DemoConfig(out=tmp_path), tmp_path)
    demo.observer = FakeObserver(sfn)  # type: ignore[assignment]
    schedules = {"LabelingTriggerSchedule-x": {}}
    router = SimpleNamespace(schedules=schedules, fire_schedule=fired.append)
    demo.runtime = SimpleNamespace(router=router, client=lambda service: sfn)
    said: list[str] = []
    demo.progress.say = said.append  # type: ignore[method-assign]
    return demo, said


def test_labeling_started_by_the_drift_alarm_is_credited_to_it(tmp_path: Path) -> None:
    sfn, fired = FakeSfn(), []
    demo, said = demo_with(tmp_path, sfn, fired)
    before = set(demo_stages.labeling_runs(demo))
    sfn.executions.append({"executionArn": "arn:phase2", "status": "RUNNING"})
    sfn.inputs["arn:phase2"] = json.dumps({"claim_id": "c", "images": ["a"], "reason": "drift"})
    note = demo_stages.await_labeling(demo, before, wait_s=5)
    assert note == "labeling started by the drift alarm (uncertain-frame share over DriftUncertainShareThreshold)"
    assert fired == [] and not any("LAST RESORT" in line for line in said)


def test_the_line_keeps_running_until_labeling_starts(tmp_path: Path) -> None:
    """The drift alarm needs two alarm periods of health reports: until labeling starts the cameras see the same
    tags again at the stream's pace, and stop once it has."""
    sfn, fired = FakeSfn(), []
    demo, _ = demo_with(tmp_path, sfn, fired)
    placed: list[tuple[str, str, str]] = []
    demo.place_frame = lambda thing, source, name=None: placed.append((thing, source.name, name))  # type: ignore[method-assign]
    line = demo_stages.RunningLine(demo, {"d1": [Path("a.jpg"), Path("b.jpg")], "d2": [Path("c.jpg")]}, rate=20.0)
    before = set(demo_stages.labeling_runs(demo))

    def keep_running() -> None:
        line.step()
        if line.placed >= 3:  # the alarm fires while the line runs
            sfn.executions.append({"executionArn": "arn:phase2", "status": "RUNNING"})
            sfn.inputs["arn:phase2"] = json.dumps({"reason": "drift"})

    note = demo_stages.await_labeling(demo, before, wait_s=30, keep_running=keep_running)
    assert "drift alarm" in note and fired == []
    d1 = [(src, name) for thing, src, name in placed if thing == "d1"]
    assert d1[:3] == [("a.jpg", "again-0-a.jpg"), ("b.jpg", "again-1-b.jpg"), ("a.jpg", "again-2-a.jpg")]
    assert {src for thing, src, _ in placed if thing == "d2"} == {"c.jpg"}
    assert line.placed >= 3 and len(placed) == 2 * line.placed  # both cameras, the same pace


def test_the_count_threshold_is_credited_too(tmp_path: Path) -> None:
    sfn, fired = FakeSfn(), []
    demo, _ = demo_with(tmp_path, sfn, fired)
    before = set(demo_stages.labeling_runs(demo))
    sfn.executions.append({"executionArn": "arn:phase2", "status": "SUCCEEDED"})
    sfn.inputs["arn:phase2"] = json.dumps({"reason": "threshold"})
    assert "count threshold" in demo_stages.await_labeling(demo, before, wait_s=5)
    assert fired == []


def test_without_a_signal_the_schedule_is_fired_as_a_named_last_resort(tmp_path: Path) -> None:
    sfn, fired = FakeSfn(), []
    demo, said = demo_with(tmp_path, sfn, fired)
    note = demo_stages.await_labeling(demo, set(demo_stages.labeling_runs(demo)), wait_s=0.5)
    assert fired == ["LabelingTriggerSchedule-x"]
    assert "last resort" in note and "schedule" in note
    assert any("LAST RESORT" in line and "schedule" in line for line in said), said


def test_the_report_draws_the_boxes_a_device_reports(tmp_path: Path) -> None:
    """The test model gives a 0.9 box, its 0.8 twin (IoU over the edge's 0.7: suppressed), a 0.1 box and one box
    whose score follows the frame's brightness."""
    assert report.deployed_thresholds() == (0.25, 0.7)  # edge_component/inference/recipe.yaml
    model = write_model(tmp_path / "model", "1")
    frames = []
    for name, score in (("weak.png", 0.2), ("unsure.png", 0.45)):
        (tmp_path / name).write_bytes(grey_png(brightness_for(score, 64)))
        frames.append(tmp_path / name)
    weak, unsure = report.detect(model, frames)
    assert weak[:, 4].tolist() == pytest.approx([0.9])  # 0.2 and 0.1 are under 0.25; the twin is suppressed
    assert sorted(unsure[:, 4].tolist()) == pytest.approx([0.45, 0.9], abs=0.01)
    below = report.detect(model, frames[:1], conf=0.05)[0]  # asked lower, still one box per object
    assert sorted(below[:, 4].tolist()) == pytest.approx([0.1, 0.2, 0.9], abs=0.01)
    assert np.all(below[:, 4] > 0.05)


def test_real_photos_split_between_phase_1_and_the_cameras_by_the_dataset_config(
    tmp_path: Path, metal_tags_dir: Path
) -> None:
    """v1 trains on half the labeled photos outside the test split; the cameras see the other half; the test split
    is uploaded with phase 1 (the split is fixed by content hash: never trained on) and is the held-out set."""
    from loupe_local.demo.context import load_folder

    cfg = DemoConfig.dataset_config(tmp_path)
    assert (cfg.phase1_share, cfg.epochs, cfg.retrain_epochs) == (0.5, 80, 50)
    tags = load_folder(metal_tags_dir)
    ctx = SimpleNamespace(cfg=SimpleNamespace(dataset=metal_tags_dir, seed=7, phase1_share=0.5), things=["d1", "d2"])
    (tmp_path / "workforce").mkdir()
    data = demo_stages._from_dataset(ctx, tmp_path / "workforce")
    streamed = [p for frames in data["stream"].values() for p in frames]
    test = [p for p, _ in data["test"]]
    outside_test = [i for i in tags.labeled if i.split != "test"]
    assert len(streamed) == len(outside_test) - len(outside_test) // 2
    assert len(data["phase1"]) == len(test) + len(outside_test) // 2 + len(tags.unlabeled)
    assert set(test) <= set(data["phase1"]) and not set(streamed) & set(data["phase1"])
