"""Hyperparameters, divergence check, INT8 keep rule, gate, model card and package."""

from __future__ import annotations

import json
import math
import tarfile

import pytest

from loupe_training import export as ex
from loupe_training.jobs import gate_decision
from loupe_training.train import HyperParams, TrainingError, check_finite_losses, find_weights


def test_hyperparameters_from_sagemaker_strings():
    hps = HyperParams.from_mapping({"epochs": "3", "imgsz": "64", "lr0": "0.002", "allow_download": "false"})
    assert (hps.epochs, hps.imgsz, hps.lr0, hps.allow_download) == (3, 64, 0.002, False)
    assert HyperParams.from_mapping({"allow_download": "True"}).allow_download is True
    gpu = HyperParams.from_mapping({"amp": "false", "deterministic": "true", "workers": "4", "time_budget_s": "540"})
    assert (gpu.amp, gpu.deterministic, gpu.workers, gpu.time_budget_s) == (False, True, 4, 540.0)


def test_gpu_defaults_are_fast_and_cpu_uses_every_core():
    """AMP on, dataloader workers from the cores, deterministic kernels only when asked (issue 12's GPU target)."""
    hps = HyperParams()
    assert hps.amp is True and hps.deterministic is False and hps.workers == -1
    assert hps.threads == 0 and hps.time_budget_s == 0.0


@pytest.mark.parametrize(
    ("values", "message"),
    [({"epoch": "3"}, "unknown hyperparameter"), ({"epochs": "x"}, "is not a int"), ({"imgsz": "100"}, "multiple")],
)
def test_bad_hyperparameters(values, message):
    with pytest.raises(ValueError, match=message):
        HyperParams.from_mapping(values)


def test_non_finite_loss_stops_training():
    check_finite_losses({"train/box_loss": 1.2}, 1)
    with pytest.raises(TrainingError, match="diverged at epoch 4"):
        check_finite_losses({"train/box_loss": math.nan, "train/cls_loss": 1.0}, 4)
    with pytest.raises(TrainingError):
        check_finite_losses({"train/cls_loss": math.inf}, 1)


def test_weights_channel(tmp_path):
    assert find_weights(None) is None
    (tmp_path / "NO_WEIGHTS").write_text("x")
    assert find_weights(tmp_path) is None
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.pt").write_bytes(b"x")
    assert find_weights(tmp_path) == tmp_path / "sub" / "w.pt"


def test_int8_is_kept_only_within_one_point_of_fp32():
    assert ex.keep_int8(0.80, 0.795)
    assert ex.keep_int8(0.80, 0.81)
    assert not ex.keep_int8(0.80, 0.789)


def test_calibration_set_is_a_deterministic_spread(tmp_path):
    files = [tmp_path / f"{i:03d}.jpg" for i in range(200)]
    picked = ex.calibration_set(list(reversed(files)), limit=10)
    assert picked == ex.calibration_set(files, limit=10)
    assert len(picked) == 10 and picked[0] == files[0] and picked[-1] == files[180]


def test_gate_threshold_and_champion():
    first = {"map50": 0.62, "champion_map50": 0.0, "has_champion": False}
    assert gate_decision(first, 0.5)[0]
    ok, why = gate_decision({**first, "map50": 0.4}, 0.5)
    assert not ok and "below the threshold 0.5000" in why
    # the bar (champion's score corrected by the paired spread) decides, not the raw champion score
    ok, why = gate_decision({"map50": 0.62, "champion_map50": 0.6, "champion_bar": 0.65, "has_champion": True}, 0.5)
    assert not ok and "below 0.6500" in why and "champion's 0.6000" in why
    assert gate_decision({"map50": 0.66, "champion_map50": 0.7, "champion_bar": 0.65, "has_champion": True}, 0.5)[0]
    # gate.json written before the bar existed: the raw champion score
    assert not gate_decision({"map50": 0.62, "champion_map50": 0.7, "has_champion": True}, 0.5)[0]


def test_model_card_and_package(tmp_path):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"fake-onnx")
    manifest = {"version": 3, "digest": "d" * 64, "counts": {"images": 5}, "class_map": {"0": "scratch"}}
    card = ex.model_card(
        manifest=manifest,
        hyperparameters={"epochs": 1},
        metrics={"map50": 0.5},
        imgsz=320,
        artifacts={"model.onnx": onnx_file},
        code_version="v-test",
        int8={"kept": False},
    )
    assert card["dataset"] == {"version": 3, "digest": "d" * 64, "counts": {"images": 5}}
    assert card["artifacts"]["model.onnx"]["sha256"] == ex.sha256_file(onnx_file)
    assert card["input"]["shape"] == [1, 3, 320, 320] and card["opset"] == ex.OPSET
    card_path = ex.write_card(tmp_path / "model_card.json", card)
    package = ex.write_package(tmp_path / "pkg", [onnx_file, card_path])
    with tarfile.open(package) as tar:
        assert sorted(tar.getnames()) == ["model.onnx", "model_card.json"]
        assert json.loads(tar.extractfile("model_card.json").read())["code_version"] == "v-test"


def test_int8_keeps_the_first_conv_and_the_detect_outputs_in_fp32():
    names = [
        "/model.0/conv/Conv",
        "/model.0/act/Mul",
        "/model.1/conv/Conv",
        "/model.21/cv2/conv/Conv",
        "/model.22/cv2.0/cv2.0.0/conv/Conv",  # head's inner conv: quantized
        "/model.22/cv2.0/cv2.0.2/Conv",
        "/model.22/cv3.1/cv3.1.2/Conv",
        "/model.22/dfl/conv/Conv",
        "/model.22/Sigmoid",
        "/model.22/Concat_3",
    ]
    kept = ex.int8_fp32_nodes(names)
    assert kept == [
        "/model.0/conv/Conv",
        "/model.0/act/Mul",
        "/model.22/cv2.0/cv2.0.2/Conv",
        "/model.22/cv3.1/cv3.1.2/Conv",
        "/model.22/dfl/conv/Conv",
        "/model.22/Sigmoid",
        "/model.22/Concat_3",
    ]
    assert ex.int8_fp32_nodes(["Conv_0", "Relu_1"]) == []  # not an Ultralytics export: nothing special
