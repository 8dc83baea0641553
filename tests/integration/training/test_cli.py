"""`loupe train` and `loupe evaluate` as a user runs them (subprocesses of the installed `loupe` script)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

LOUPE = Path(sys.executable).parent / "loupe"


def _loupe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LOUPE), *args], capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    from loupe_training.tiny import make_tiny_version

    data = tmp_path_factory.mktemp("tiny")
    make_tiny_version(data, count=30, size=64, seed=5)
    out = tmp_path_factory.mktemp("run")
    done = _loupe("train", "--dataset", str(data), "--out", str(out), "--epochs", "1", "--imgsz", "64")
    return data, out, done


def test_train_writes_models_card_and_package(trained):
    _, out, done = trained
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(summary["model_sha256"]) == 64
    assert "epoch 1/1" in done.stderr  # per-epoch progress line
    # every core trains (Ultralytics alone would leave torch at min(8, cores - 1) threads)
    assert f"on cpu, {os.cpu_count()} CPU threads" in done.stderr
    import onnx

    model = onnx.load(str(out / "model" / "model.onnx"))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]  # static input
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 17
    int8 = onnx.load(str(out / "model" / "model_int8.onnx"))
    consumers = {}
    for node in int8.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    initializers = {i.name for i in int8.graph.initializer}
    # quantized weights: DequantizeLinear of an int8 initializer; only Conv nodes may consume them
    weights = [
        n
        for n in int8.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in initializers
        and any(t.name == n.input[0] and t.data_type == onnx.TensorProto.INT8 for t in int8.graph.initializer)
    ]
    assert weights, "INT8 model has no quantized weights"
    assert {op for n in weights for op in consumers.get(n.output[0], [])} == {"Conv"}
    card = json.loads((out / "evaluation" / "model_card.json").read_text())
    assert card["artifacts"]["model.onnx"]["sha256"] == summary["model_sha256"]
    assert card["input"]["imgsz"] == 64
    # what a warm start from this model checks before it unpickles best.pt (loupe_training.jobs.champion_weights)
    best = out / "model" / "best.pt"
    assert card["weights"]["sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert card["weights"]["file"] == "best.pt" and card["weights"]["bytes"] == best.stat().st_size
    details = json.loads((out / "evaluation" / "details.json").read_text())
    spread = details["fp32"]["spread"]
    assert spread["images"] == details["fp32"]["images"] and spread["bootstrap"] == 1000
    lo, hi = spread["map50"]["ci90"]
    assert lo <= hi and card["metrics"]["spread"] == spread
    samples = details["samples"]
    assert samples and all((out / "evaluation" / s["image"]).is_file() for s in samples)
    assert all(s["conf_threshold"] == 0.25 and isinstance(s["truth"], list) for s in samples)
    assert any(s["truth"] for s in samples)  # tiny pictures carry boxes: the truth is drawn


def test_training_from_scratch_uses_the_fair_stopping_rule_and_says_what_went_wrong(trained):
    """The from-scratch rule is the trainer's stopper (it saw the epoch's validation), and the weak tiny model's
    run carries its diagnosis to train_summary.json, gate.json, the console and the JSON result (issue 22)."""
    _, out, done = trained
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "model" / "train_summary.json").read_text())
    stopping = summary["stopping"]
    assert stopping["rule"].startswith("from scratch") and stopping["min_epochs"] == 1
    assert stopping["best_epoch"] == 1  # Ultralytics called this rule after epoch 1's validation
    assert summary["train_split"]["images"] == len(list((out / "prepared" / "labels" / "train").glob("*.txt")))
    assert "data too small" in summary["diagnosis"]["text"]  # 30 tiny pictures
    gate = json.loads((out / "evaluation" / "gate.json").read_text())
    assert gate["diagnosis_text"] == summary["diagnosis"]["text"]
    assert f"training diagnosis: {gate['diagnosis_text']}" in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["diagnosis_text"] == gate["diagnosis_text"]


def test_evaluate_json_scores_the_test_split(trained):
    data, out, done = trained
    assert done.returncode == 0, done.stderr[-2000:]
    result = _loupe("evaluate", "--model", str(out / "model" / "model.onnx"), "--dataset", str(data), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    scored = json.loads(result.stdout)  # stdout is exactly one JSON object
    assert {"map50", "map50_95", "precision", "recall", "images"} <= set(scored)
    manifest = json.loads((data / "dataset.json").read_text())
    assert scored["images"] == manifest["counts"]["test"]
    gate = json.loads((out / "evaluation" / "gate.json").read_text())
    assert scored["map50"] == pytest.approx(gate["map50"], abs=1e-6)


def test_bad_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    done = _loupe("train", "--dataset", str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "empty dataset folder" in done.stderr
    missing = _loupe("evaluate", "--model", str(tmp_path / "none.onnx"), "--dataset", str(tmp_path), "--json")
    assert missing.returncode == 2 and "no such model file" in missing.stderr
