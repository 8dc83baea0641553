"""The project's main job, reduced: `loupe demo --quick` runs the whole closed loop on the local AWS (few images,
few epochs) — upload, ingest, labeling, v1, approval, deployment to two devices, phase-2 frames, feedback through
S3 and the IoT rule, labeling, v2 warm-started, approval, deployment — and writes the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def test_the_reduced_loop_reaches_v2_on_both_devices(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "MOTO_PORT", "LOUPE_STATE_DIR")}
    run = subprocess.run(
        [str(Path(sys.executable).parent / "loupe"), "demo", "--quick", "--out", str(out)],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    log = (run.stdout + run.stderr)[-6000:]
    assert run.returncode == 0, log
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["wall_seconds"] > 0
    models = summary["models"]
    assert [m["version"] for m in models] == [1, 2], log
    assert models[0]["dataset_version"] == 1 and models[1]["dataset_version"] == 2
    assert models[1]["parent_dataset_version"] == 1
    assert all(isinstance(m["test_map50_phase2"], float) for m in models)
    assert all(m["approval"] == "Approved" for m in models)
    datasets = {d["version"]: d for d in summary["datasets"]}
    assert datasets[2]["by_origin"].get("edge_feedback", 0) > 0, "v2 must contain frames the devices sent back"
    devices = summary["devices"]
    assert len(devices) == 2
    assert all(d["model_version"] == models[1]["model_version"] for d in devices), devices
    assert all(d["frames"] > 0 and d["feedback_frames"] > 0 for d in devices), devices
    html = (out / "report" / "index.html").read_text()
    for picture in ("timeline.png", "metrics.png", "samples/sample-0.png"):
        assert (out / "report" / picture).is_file(), picture
        assert picture in html
    # v2 ran beside v1 on the devices before its approval (shadow mode): its field agreement is in the summary and
    # the report; v1 had nothing in production to compare with
    assert models[0]["field_agreement"] is None
    field = models[1]["field_agreement"]
    assert field is not None and field["frames"] > 0 and field["devices"] >= 1, log
    assert "field agreement with production at approval" in html
    assert f"{field['frames']} frames on {field['devices']} device(s)" in html
    shadow = [s for s in summary["stages"] if "beside production" in s["name"]]
    assert [s["name"] for s in shadow] == ["model v2 beside production on the devices (shadow), before its approval"]
    # v2 reached the fleet through a canary: half the fleet first (CanaryPercent 50 in the demo), the rest on v1 over
    # the window, then promoted by the state machine's own verdict; the report draws both cohorts over the window
    canary = summary["canary"]
    assert canary is not None and canary["status"] == "PROMOTED", canary
    assert len(canary["cohort"]) == 1 and len(canary["rest"]) == 1, canary
    assert canary["challenger_version"] == models[1]["model_version"], canary
    assert canary["champion_version"] == models[0]["model_version"], canary
    assert canary["verdict"] == "promote" and canary["window"]["challenger"]["frames"] > 0, canary
    assert (out / "report" / "canary.png").is_file() and "<h2>Canary</h2>" in html
    assert any(s["name"].startswith("canary: model v2 on 50% of the fleet") for s in summary["stages"])
