"""Before approving a gate-passing v2 the demo keeps the cameras running until v2, beside v1 on the devices
(shadow mode), has compared enough frames (or a bounded wait ends, said so), shows the field agreement next to the
gate's numbers, records it in the package's metadata with the approval, and carries it into summary.json and the
HTML report. A first model (nothing in production) waits for nothing and says nothing about it."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loupe_local.demo import evaluation as demo_evaluation
from loupe_local.demo import report
from loupe_local.demo import shadow as demo_shadow
from loupe_local.demo import stages as demo_stages
from loupe_local.demo.command import Demo, DemoConfig
from loupe_local.demo.context import ModelRecord
from loupe_local.observer import Observer

V1 = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/1"
V2 = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/2"


def field(frames: int, devices: int = 1) -> dict[str, Any]:
    return {
        "model_version": "2",
        "devices": devices,
        "frames": frames,
        "errors": 0,
        "missed_defects": 1,
        "false_alarms": 2,
        "verdict_agreement": 0.875 if frames else None,
        "box_recall": 0.9 if frames else None,
        "box_precision": 0.75 if frames else None,
    }


@pytest.mark.parametrize(
    ("evidence", "elapsed", "expected"),
    [
        (None, 0.0, "wait"),  # the candidate is not serving yet: no counters
        (field(15), 10.0, "wait"),  # one short
        (field(16), 10.0, "ready"),
        (field(40, devices=2), 0.0, "ready"),
        (field(16, devices=0), 10.0, "wait"),  # frames without a device are no evidence
        (field(15), 90.0, "timeout"),
        (None, 120.0, "timeout"),
        (field(16), 200.0, "ready"),  # enough evidence wins over a late check
    ],
)
def test_the_wait_ends_on_enough_compared_frames_or_its_timeout(
    evidence: dict[str, Any] | None, elapsed: float, expected: str
) -> None:
    assert demo_shadow.field_decision(evidence, 16, 1, elapsed, 90.0) == expected


class FieldObserver:
    """Counters that grow as the devices report health windows."""

    def __init__(self, readings: list[dict[str, Any] | None]) -> None:
        self.readings = readings
        self.asked: list[str] = []

    def field_evidence(self, package_arn: str) -> dict[str, Any] | None:
        self.asked.append(package_arn)
        return self.readings[min(len(self.asked), len(self.readings)) - 1]


def demo_with(tmp_path: Path, observer: Any, **cfg: Any) -> tuple[Demo, list[tuple[str, str]], list[str]]:
    demo = Demo(DemoConfig(out=tmp_path, frame_rate=1000.0, **cfg), tmp_path)
    demo.observer = observer
    demo.things = ["loupe-device-1", "loupe-device-2"]
    said: list[str] = []
    demo.progress.say = said.append  # type: ignore[method-assign]
    frame = tmp_path / "frame.jpg"
    frame.write_bytes(b"\xff\xd8 a frame")
    demo.data["stream"] = {thing: [frame] for thing in demo.things}
    placed: list[tuple[str, str]] = []
    demo.place_frame = lambda thing, source, name=None: placed.append((thing, str(name)))  # type: ignore[method-assign]
    return demo, placed, said


def v2_record(**kw: Any) -> ModelRecord:
    return ModelRecord(
        version=2, package_arn=V2, dataset_version=2, parent_dataset_version=1, pipeline_test_map50=0.61, **kw
    )


def v1_in_production() -> ModelRecord:
    return ModelRecord(version=1, package_arn=V1, dataset_version=1, parent_dataset_version=None)


def test_the_demo_runs_the_line_until_the_candidate_compared_enough_frames(tmp_path: Path) -> None:
    observer = FieldObserver([None, None, field(6), field(20, devices=2)])
    demo, placed, said = demo_with(tmp_path, observer, field_frames=16, field_wait_s=60.0)
    demo.models.append(v1_in_production())
    record = v2_record()
    demo_shadow.await_field_agreement(demo, record, 2)
    assert observer.asked == [V2] * 4
    assert record.field_agreement == field(20, devices=2)
    assert placed and {thing for thing, _ in placed} == set(demo.things)  # the cameras kept running meanwhile
    assert len({name for _, name in placed}) == len(placed) // 2 and all(n.startswith("field-v2-") for _, n in placed)
    stage = demo.progress.stages[-1]
    assert stage["name"] == "model v2 beside production on the devices (shadow), before its approval"
    assert "gate: pipeline test mAP50 0.61 (passed)" in stage["note"]
    assert "field: 20 frames compared on 2 device(s), verdict agreement 87.5%" in stage["note"]
    assert "box recall 90.0%, box precision 75.0%, 2 false alarms, 1 missed defects" in stage["note"]
    assert "not enough" not in stage["note"]


def test_without_enough_evidence_the_demo_says_so_and_goes_on(tmp_path: Path) -> None:
    observer = FieldObserver([field(3)])
    demo, _, _ = demo_with(tmp_path, observer, field_frames=16, field_wait_s=0.6)
    demo.models.append(v1_in_production())
    record = v2_record()
    demo_shadow.await_field_agreement(demo, record, 2)
    assert len(observer.asked) >= 2  # it waited, re-reading the counters
    assert record.field_agreement == field(3)
    note = demo.progress.stages[-1]["note"]
    assert note.startswith("not enough field evidence within 1s (approving on what there is)")
    assert "field: 3 frames compared on 1 device(s)" in note


@pytest.mark.parametrize(("models", "refusal"), [([], ""), ([v1_in_production()], "mAP50 0.1 under the threshold 0.3")])
def test_a_first_model_or_a_refused_one_waits_for_nothing(
    tmp_path: Path, models: list[ModelRecord], refusal: str
) -> None:
    observer = FieldObserver([None])
    demo, placed, said = demo_with(tmp_path, observer)
    demo.models.extend(models)
    record = v2_record(gate_refusal=refusal)
    demo_shadow.await_field_agreement(demo, record, len(models) + 1)
    assert observer.asked == [] and placed == [] and said == [] and demo.progress.stages == []
    assert record.field_agreement is None


class FakeSageMaker:
    def __init__(self, metadata: dict[str, str]) -> None:
        self.metadata = metadata
        self.updates: list[dict[str, Any]] = []

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"ModelPackageArn": ModelPackageName, "CustomerMetadataProperties": dict(self.metadata)}

    def update_model_package(self, **kwargs: Any) -> dict[str, Any]:
        self.updates.append(kwargs)
        return {"ModelPackageArn": kwargs["ModelPackageArn"]}


SHADOW_TOTALS = {
    "version": "2",
    "thing_group": "loupe-fleet",
    "devices": {"loupe-device-1": {"last_window_end": "2026-12-06T11:00:05Z"}},
    "totals": {"frames": 24, "verdict_ok_ok": 20, "verdict_ng_ng": 1, "verdict_ok_ng": 2, "verdict_ng_ok": 1},
}


def approving_demo(tmp_path: Path, sm: FakeSageMaker, totals: dict[str, Any] | None) -> tuple[Demo, list[str]]:
    resources = {"DeploymentsTable": {"physical": "deployments", "arn": "arn:aws:dynamodb:::table/deployments"}}
    observer = Observer("http://127.0.0.1:9", "us-east-1", resources, tmp_path)
    observer.shadow_summary = lambda package_arn: totals  # type: ignore[method-assign]
    demo, _, said = demo_with(tmp_path, observer)
    demo.client = lambda service: sm  # type: ignore[method-assign]
    return demo, said


def test_the_automatic_approval_records_the_field_agreement_with_the_packages_own_metadata(tmp_path: Path) -> None:
    sm = FakeSageMaker({"model_sha256": "ab" * 32, "gate_map50": "0.61"})
    demo, _ = approving_demo(tmp_path, sm, SHADOW_TOTALS)
    record = v2_record(approval="PendingManualApproval", field_agreement=field(16))
    demo_stages.approve(demo, record, 2)
    (update,) = sm.updates
    assert update["ModelApprovalStatus"] == "Approved"
    meta = update["CustomerMetadataProperties"]
    assert meta["model_sha256"] == "ab" * 32 and meta["gate_map50"] == "0.61"  # kept
    assert meta["field_shadow_frames"] == "24" and meta["field_shadow_devices"] == "1"
    assert meta["field_false_alarms"] == "2" and meta["field_missed_defects"] == "1"
    assert meta["field_verdict_agreement"] == "0.8750"
    assert record.field_agreement is not None and record.field_agreement["frames"] == 24  # read at approval
    note = demo.progress.stages[-1]["note"]
    assert note.startswith("approved (demo: automatic); gate: pipeline test mAP50 0.61 (passed); field: 24 frames")


def test_a_model_that_never_ran_beside_production_is_approved_without_field_noise(tmp_path: Path) -> None:
    sm = FakeSageMaker({"model_sha256": "cd" * 32})
    demo, _ = approving_demo(tmp_path, sm, None)
    record = ModelRecord(
        version=1, package_arn=V1, dataset_version=1, parent_dataset_version=None, approval="PendingManualApproval"
    )
    demo_stages.approve(demo, record, 1)
    (update,) = sm.updates
    assert "CustomerMetadataProperties" not in update
    assert demo.progress.stages[-1]["note"] == "approved (demo: automatic)"


def test_summary_and_report_carry_the_field_agreement_at_approval(tmp_path: Path) -> None:
    models = [v1_in_production(), v2_record(approval="Approved", field_agreement=field(24, devices=2))]
    rows = demo_evaluation.model_rows(models)
    assert rows[0]["field_agreement"] is None
    assert rows[1]["field_agreement"] == field(24, devices=2)
    page = report.write_html(tmp_path, {"models": rows}, {}).read_text()
    assert "field agreement with production at approval" in page
    assert "not run beside production" in page  # v1
    assert (
        "24 frames on 2 device(s): verdicts agree 87.5%, box recall 90.0%, box precision 75.0%, "
        "2 false alarms, 1 missed defects"
    ) in page


def health_says(state: str, version: str = "2") -> dict[str, list[dict[str, Any]]]:
    """The demo watcher's last health message of each device: candidate ``version`` in ``state``."""
    return {t: [{"shadow_version": version, "shadow_state": state}] for t in ("loupe-device-1", "loupe-device-2")}


def test_the_cameras_stay_at_most_a_few_frames_ahead_of_the_slowest_device(tmp_path: Path) -> None:
    observer = FieldObserver([None])
    demo, placed, _ = demo_with(tmp_path, observer, field_frames=16, field_wait_s=0.6)
    demo.watcher = SimpleNamespace(
        lock=threading.Lock(), frames={"loupe-device-1": 100, "loupe-device-2": 3}, health=health_says("running")
    )
    demo.models.append(v1_in_production())
    demo_shadow.await_field_agreement(demo, v2_record(model_version="2"), 2)
    assert len(placed) == 2 * demo_shadow.BACKLOG == 16  # the slowest device processes nothing meanwhile
    assert demo.progress.stages[-1]["note"].endswith("(waited 1s, 8 frames placed per camera)")


class Processing(dict):
    """The watcher's inference counts of devices that keep up: each look finds 1,000 more frames processed."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0

    def get(self, key: Any, default: Any = None) -> int:
        self.looks += 1
        return 1000 * self.looks


def test_no_frame_goes_in_before_the_candidate_runs_beside_production(tmp_path: Path) -> None:
    """A frame the devices process while the candidate still loads is never compared: the cameras wait for every
    device's health to say the candidate runs."""
    watcher = SimpleNamespace(lock=threading.Lock(), frames=Processing(), health=health_says("loading"))
    placed_when_asked: list[int] = []

    class Observing(FieldObserver):
        def field_evidence(self, package_arn: str) -> dict[str, Any] | None:
            placed_when_asked.append(len(placed))
            if len(self.asked) == 2:  # the third look: the devices' health now says the candidate runs
                watcher.health = health_says("running")
            return super().field_evidence(package_arn)

    readings = [None, None, None, None, field(16)]
    demo, placed, _ = demo_with(tmp_path, Observing(readings), field_frames=16, field_wait_s=60)
    demo.watcher = watcher
    demo.models.append(v1_in_production())
    demo_shadow.await_field_agreement(demo, v2_record(model_version="2"), 2)
    assert placed_when_asked[:3] == [0, 0, 0] and placed_when_asked[-1] > 0


def test_the_cameras_place_only_twice_the_frames_the_comparisons_need(tmp_path: Path) -> None:
    """16 compared frames on 2 devices, the candidate on every 5th frame: 40 frames a camera, 80 placed at most while
    the counters make their way through the health windows."""
    demo, placed, _ = demo_with(tmp_path, FieldObserver([None]), field_frames=16, field_wait_s=0.6)
    demo.watcher = SimpleNamespace(lock=threading.Lock(), frames=Processing(), health=health_says("running"))
    demo.models.append(v1_in_production())
    demo_shadow.await_field_agreement(demo, v2_record(model_version="2"), 2)
    assert len(placed) == 2 * 80


def test_a_device_that_never_says_its_candidate_runs_still_gets_frames(tmp_path: Path) -> None:
    """After a third of the wait the cameras run anyway: the wait's own deadline decides, as before."""
    demo, placed, _ = demo_with(tmp_path, FieldObserver([None]), field_frames=16, field_wait_s=0.9)
    demo.watcher = SimpleNamespace(lock=threading.Lock(), frames=Processing(), health=health_says("loading"))
    demo.models.append(v1_in_production())
    demo_shadow.await_field_agreement(demo, v2_record(model_version="2"), 2)
    assert placed and demo.progress.stages[-1]["note"].startswith("not enough field evidence")
