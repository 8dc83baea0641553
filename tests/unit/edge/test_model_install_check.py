"""edge_component/model/check_model.py, run the way com.loupe.model's Install step runs it (a subprocess): the
registered digests, then one smoke inference; a non-zero exit fails the deployment on the device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.edge_helpers import sha256, write_model

SCRIPT = Path(__file__).resolve().parents[3] / "edge_component" / "model" / "check_model.py"


def check(folder: Path, *digests: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(SCRIPT), "--dir", str(folder)]
    for d in digests:
        args += ["--sha256", d]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def registered(folder: Path) -> str:
    return f"model.onnx={sha256((folder / 'model.onnx').read_bytes())}"


def test_a_good_model_passes_digests_and_one_inference(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", "v1", int8=True)
    out = check(folder, registered(folder), f"model_int8.onnx={sha256((folder / 'model_int8.onnx').read_bytes())}")
    assert out.returncode == 0, out.stderr
    assert "digests ok: model.onnx, model_int8.onnx" in out.stdout
    assert out.stdout.count("smoke inference ok") == 2 and "output [1, 5, 4]" in out.stdout


def test_bytes_that_are_not_the_registered_ones_fail(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", "v1")
    out = check(folder, f"model.onnx={'0' * 64}", "model_int8.onnx=")
    assert out.returncode != 0 and "does not match the registered" in out.stderr


def test_a_model_that_does_not_load_fails(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", "v1", corrupt=True)
    out = check(folder, registered(folder))
    assert out.returncode != 0 and "does not load" in out.stderr


def test_a_model_incompatible_with_its_card_fails(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", "v1", nc=2)  # outputs 2 classes
    card = json.loads((folder / "model_card.json").read_text())
    card["class_map"] = {"0": "scratch"}  # the card names 1
    (folder / "model_card.json").write_text(json.dumps(card))
    out = check(folder, registered(folder))
    assert out.returncode != 0 and "outputs 2 classes, the model card names 1" in out.stderr


def test_without_a_registered_model_digest_nothing_is_trusted(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", "v1")
    out = check(folder, "model.onnx=")
    assert out.returncode != 0 and "no registered sha256 for model.onnx" in out.stderr
