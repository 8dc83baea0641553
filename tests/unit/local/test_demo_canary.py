"""The demo's canary: fresh frames for its window (new images, the same answers), its stack parameters, the report's
two-cohort chart and section, and the demo's result when the canary rolls the new model back."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

from loupe_local.demo import canary as demo_canary
from loupe_local.demo import report
from loupe_local.demo.context import ModelRecord
from loupe_local.demo.evaluation import canary_summary, result


def _jpeg(path: Path, shade: int, orientation: int = 1) -> Path:
    img = Image.new("RGB", (64, 48), (shade, shade, shade))
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    path.write_bytes(buf.getvalue())
    return path


def test_fresh_frames_are_new_images_with_the_answers_of_their_tags(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    a = [_jpeg(src / f"a{i}.jpg", 40 + i) for i in range(4)]
    b = [_jpeg(src / "b0.jpg", 90), _jpeg(src / "b1.jpg", 91, orientation=6), _jpeg(src / "b2.jpg", 92)]
    box = {"class_id": 0, "left": 3, "top": 4, "width": 10, "height": 6}
    answers = {str(p): [box] for p in a + b}
    frames, lines = demo_canary.fresh_frames({"dev-1": a, "dev-2": b}, answers, tmp_path / "canary", per_device=3)

    assert [p.name for p in frames["dev-1"]] == ["canary-a0.jpg", "canary-a1.jpg", "canary-a2.jpg"]
    # a frame its EXIF turns is left out (labeled precision skips those), the next one is taken instead
    assert [p.name for p in frames["dev-2"]] == ["canary-b0.jpg", "canary-b2.jpg"]
    old = {hashlib.sha256(p.read_bytes()).hexdigest() for p in a + b}
    new = [hashlib.sha256(p.read_bytes()).hexdigest() for p in frames["dev-1"] + frames["dev-2"]]
    assert not old & set(new), "a canary frame must be a new image for the ledger"
    assert [line["sha256"] for line in lines] == new
    assert all(line["annotations"] == [box] for line in lines)

    demo_canary.write_answers(tmp_path, lines)
    written = [json.loads(x) for x in (tmp_path / "canary.jsonl").read_text().splitlines()]
    assert written == lines


def test_the_demo_canary_takes_half_the_fleet_over_half_of_each_cameras_frames() -> None:
    params = demo_canary.parameters(frames_per_device=24, min_labeled=3)
    assert params["CanaryPercent"] == "50"
    assert params["CanaryWindowFrames"] == "12"
    assert params["CanaryMinLabeledFrames"] == "3"
    # the window's checks run every timeout/20 s: a few seconds, not a minute
    assert int(params["CanaryWindowTimeoutSeconds"]) // 20 <= 10
    assert demo_canary.parameters(frames_per_device=2, min_labeled=1)["CanaryWindowFrames"] == "2"


def test_a_chart_point_holds_each_cohorts_shares_so_far() -> None:
    point = demo_canary.cohort_point(12.34, {"frames": 10, "uncertain": 2, "ng": 5}, {"frames": 0})
    assert point == {
        "t": 12.3,
        "canary": {"frames": 10, "uncertain_share": 0.2, "ng_rate": 0.5},
        "champion": {"frames": 0, "uncertain_share": None, "ng_rate": None},
    }


def _canary(status: str) -> dict:
    samples = [
        demo_canary.cohort_point(
            t, {"frames": f, "uncertain": f // 4, "ng": f // 2}, {"frames": f, "uncertain": f // 2}
        )
        for t, f in ((100.0, 0), (104.0, 4), (108.0, 8), (112.0, 12))
    ]
    return {
        "status": status,
        "cohort": ["dev-1"],
        "rest": ["dev-2"],
        "champion_version": "1",
        "challenger_version": "2",
        "ended": "the cohort served 12 frames (window 12)",
        "verdict": "promote" if status == "PROMOTED" else "rollback",
        "reasons": [] if status == "PROMOTED" else ["uncertain share 0.50 vs 0.10: worse beyond 0.02 (p=0.001)"],
        "window": {"challenger": {"frames": 12, "uncertain": 3, "ng": 6}, "champion": {"frames": 12, "uncertain": 6}},
        "labels": {},
        "held": False,
        "samples": samples,
    }


def test_the_report_draws_both_cohorts_and_says_the_verdict(tmp_path: Path) -> None:
    canary = _canary("PROMOTED")
    events = [(104.0, "held for labels"), (112.0, "promoted")]
    chart = report.canary_chart(canary["samples"], tmp_path / "canary.png", ("canary: v2", "rest: v1"), events)
    assert chart is not None and chart.stat().st_size > 1000
    assert report.canary_chart(canary["samples"][:1], tmp_path / "none.png", ("a", "b")) is None
    html = report.write_html(tmp_path, {"canary": canary}, {"canary": "canary.png"}).read_text()
    assert "<h2>Canary</h2>" in html and 'src="canary.png"' in html
    assert "PROMOTED: model 2 on dev-1, model 1 on dev-2" in html
    assert "not worse beyond the margins" in html


def test_a_rolled_back_canary_is_the_loops_end_with_its_reason_not_incomplete() -> None:
    v2 = ModelRecord(version=2, package_arn="arn:pkg/2", dataset_version=2, parent_dataset_version=1, model_version="2")
    devices = [{"model_version": "1"}, {"model_version": "1"}]
    assert result(v2, devices) == "incomplete"
    v2.canary = _canary("ROLLED_BACK")
    assert (
        result(v2, devices) == "v2 rolled back by its canary: uncertain share 0.50 vs 0.10: worse beyond 0.02 (p=0.001)"
    )
    summary = canary_summary(v2)
    assert summary is not None and summary["status"] == "ROLLED_BACK" and summary["samples"] == 4
    v2.canary = _canary("PROMOTED")
    assert result(v2, [{"model_version": "2"}, {"model_version": "2"}]) == "v2 deployed on every device"
