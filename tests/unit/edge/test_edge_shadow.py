"""Shadow mode's arithmetic and its configuration: agreement counters, streaming percentiles, the candidate's checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.edge_helpers import default_table, write_model

from loupe_edge.config import validate
from loupe_edge.model import ModelError, ModelSettings
from loupe_edge.shadow import AgreementWindow, LatencyHistogram, ShadowRunner, ShadowSpec

HEX_A = "a" * 64
HEX_B = "b" * 64
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/7"


def boxes(*rows: tuple[float, float, float, float, float, int]) -> np.ndarray:
    return np.array(rows, dtype=np.float32).reshape(-1, 6)


PROD = boxes((10, 10, 50, 50, 0.9, 0), (100, 100, 140, 160, 0.7, 0))


def test_identical_outputs_agree_completely() -> None:
    w = AgreementWindow()
    for _ in range(4):
        w.seen()
        w.add(PROD, PROD.copy(), True, True, False, False, 3.0)
    s = w.snapshot()
    assert s["frames"] == 4 and s["production_frames"] == 4
    assert s["verdict"] == {"ok_ok": 0, "ok_ng": 0, "ng_ok": 0, "ng_ng": 4}
    assert s["boxes"] == {"production": 8, "shadow": 8, "matched": 8}
    assert s["verdict_agreement"] == 1.0 and s["box_recall"] == 1.0 and s["box_precision"] == 1.0


def test_shifted_boxes_lower_the_agreement_at_iou_one_half() -> None:
    """A box moved by a quarter of its width still overlaps with IoU 0.6 (matched); moved by half it is 1/3 (not)."""
    near = PROD.copy()
    near[:, [0, 2]] += 10  # 40 px wide boxes, 10 px to the right: IoU 30*40 / (2*1600 - 1200) = 0.6
    far = PROD.copy()
    far[:, [0, 2]] += 20  # IoU 20*40 / (3200 - 800) = 1/3
    w = AgreementWindow()
    w.add(PROD, near, True, True, False, False, 1.0)
    assert w.snapshot()["box_recall"] == 1.0
    w.add(PROD, far, True, True, False, False, 1.0)
    s = w.snapshot()
    assert s["boxes"] == {"production": 2, "shadow": 2, "matched": 0}
    assert s["box_recall"] == 0.0 and s["box_precision"] == 0.0
    assert s["verdict_agreement"] == 1.0  # both still say NG: the boxes disagree, the verdicts do not


def test_verdict_table_and_uncertain_shares() -> None:
    w = AgreementWindow()
    none = boxes()
    w.add(PROD, none, True, False, False, True, 1.0)  # production NG, candidate OK: a missed defect
    w.add(none, PROD, False, True, True, False, 1.0)  # a false alarm
    w.add(none, none, False, False, False, False, 1.0)
    w.add(PROD, PROD, True, True, False, True, 1.0)
    s = w.snapshot()
    assert s["verdict"] == {"ok_ok": 1, "ok_ng": 1, "ng_ok": 1, "ng_ng": 1}
    assert s["verdict_agreement"] == 0.5
    assert s["uncertain"] == {"production": 1, "shadow": 2}
    assert s["production_uncertain_share"] == 0.25 and s["shadow_uncertain_share"] == 0.5
    assert s["boxes"] == {"production": 4, "shadow": 4, "matched": 2}


def test_a_window_rolls_over_and_empty_ratios_are_null() -> None:
    w = AgreementWindow()
    w.add(PROD, PROD, True, True, False, False, 2.0)
    first = w.snapshot(reset=True)
    second = w.snapshot(reset=True)
    assert first["frames"] == 1 and second["frames"] == 0
    assert second["verdict_agreement"] is None and second["latency_ms"] == {"p50": None, "p95": None}
    assert second["window"]["start"] == first["window"]["end"]


def test_latency_percentiles_stream_in_constant_memory() -> None:
    rng = np.random.default_rng(2301)
    values = rng.lognormal(mean=3.0, sigma=0.6, size=50_000)  # ~20 ms with a long tail
    h = LatencyHistogram()
    size = h.counts.nbytes
    for v in values:
        h.add(float(v))
    assert h.counts.nbytes == size and h.n == values.size
    for q in (50, 95):
        exact = float(np.percentile(values, q))
        assert h.percentile(q) == pytest.approx(exact, rel=0.03)
    h.add(float("nan"))  # a broken clock does not break the window
    h.add(1e9)
    assert h.n == values.size + 2


def test_shadow_configuration_is_validated_with_reasons() -> None:
    ok = validate(
        {
            "shadow": {
                "enabled": True,
                "modelVersion": "8",
                "modelPackageArn": ARN,
                "sha256": {"model.onnx": HEX_A.upper(), "model_int8.onnx": ""},
                "everyNthFrame": 10,
            }
        }
    )
    assert ok.problems == []
    assert ok.get("shadow.sha256") == {"model.onnx": HEX_A, "model_int8.onnx": ""}
    assert validate({}).get("shadow.everyNthFrame") == 5
    bad = validate(
        {
            "shadow": {
                "everyNthFrame": 0,
                "modelVersion": "8; rm -rf /",
                "modelPackageArn": "arn:aws:s3:::bucket",
                "sha256": {"model.onnx": "xyz", "evil.onnx": HEX_A},
            }
        }
    )
    text = "\n".join(bad.problems)
    assert "shadow.everyNthFrame: 0 is below the minimum 1; using default 5" in text
    assert "shadow.modelVersion" in text and "is not a model version" in text
    assert "shadow.modelPackageArn" in text and "not a SageMaker model package ARN" in text
    assert "shadow.sha256: unknown model files ['evil.onnx']" in text
    assert bad.get("shadow.everyNthFrame") == 5 and bad.get("shadow.sha256") == {}
    assert bad.get("shadow.modelVersion") == ""
    bad_hex = validate({"shadow": {"sha256": {"model.onnx": "xyz"}}})
    assert any("model.onnx: 'xyz' is not a SHA-256 in hex" in p for p in bad_hex.problems)


def _spec(tmp_path: Path, **block: object) -> ShadowSpec:
    cfg = validate({"shadow": {"enabled": True, **block}})
    return ShadowSpec.from_config(cfg.get("shadow"), tmp_path / "work" / "com.loupe.inference")


def _pointer(tmp_path: Path, folder: Path, version: str, digest: str) -> Path:
    pointer = tmp_path / "work" / "com.loupe.shadow" / "current.json"
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"dir": str(folder), "version": version, "sha256": {"model.onnx": digest}}))
    return pointer


def test_the_candidate_follows_the_shadow_components_pointer_with_the_configured_version_and_digests(
    tmp_path: Path,
) -> None:
    cand = write_model(tmp_path / "cand", "8", table=default_table(64, base=0.5))
    digest = json.loads((cand / "model_card.json").read_text())["sha256"]["model.onnx"]
    pointer = _pointer(tmp_path, cand, "8", digest)
    spec = _spec(tmp_path, modelVersion="8", sha256={"model.onnx": digest})
    assert spec.pointer == pointer  # <workDir>/../com.loupe.shadow/current.json
    runner = ShadowRunner(spec, ModelSettings(), poll_seconds=3600, max_pixels=10**6)
    assert runner.manager.check() and runner.model is not None and runner.model.version == "8"


@pytest.mark.parametrize(
    ("pointer_version", "configured", "reason"),
    [
        ("7", {"modelVersion": "8"}, "names model '7', the configuration '8'"),
        ("8", {"modelVersion": "8"}, "registers no digest for model.onnx"),
        ("8", {"modelVersion": "8", "sha256": {"model.onnx": HEX_B}}, "the pointer registers"),
    ],
    ids=["another-version", "no-digest", "digest-disagrees"],
)
def test_a_candidate_the_configuration_does_not_vouch_for_is_refused(
    tmp_path: Path, pointer_version: str, configured: dict, reason: str
) -> None:
    cand = write_model(tmp_path / "cand", pointer_version)
    digest = json.loads((cand / "model_card.json").read_text())["sha256"]["model.onnx"]
    _pointer(tmp_path, cand, pointer_version, digest)
    runner = ShadowRunner(_spec(tmp_path, **configured), ModelSettings(), poll_seconds=3600, max_pixels=10**6)
    assert not runner.manager.check()
    snap = runner.snapshot()
    assert runner.model is None and snap["state"] == "failed" and reason in snap["error"] and snap["errors"] == 1


def test_a_file_that_is_not_what_the_configuration_registered_is_refused(tmp_path: Path) -> None:
    """The pointer and the configuration agree, but the bytes on disk are another model's."""
    cand = write_model(tmp_path / "cand", "8")
    _pointer(tmp_path, cand, "8", HEX_A)
    runner = ShadowRunner(_spec(tmp_path, modelVersion="8", sha256={"model.onnx": HEX_A}), ModelSettings(), 3600, 10**6)
    assert not runner.manager.check()
    assert "deployment registered sha256 aaaaaaaaaaaa" in runner.snapshot()["error"]


def test_a_missing_pointer_is_one_error_however_often_it_is_checked(tmp_path: Path) -> None:
    spec = _spec(tmp_path, modelVersion="8", sha256={"model.onnx": HEX_A})
    runner = ShadowRunner(spec, ModelSettings(), 3600, 10**6, install_grace_s=0)  # past its install grace
    for _ in range(3):
        runner.manager.check()
    snap = runner.snapshot()
    assert snap["state"] == "failed" and "does not exist" in snap["error"] and snap["errors"] == 1


def test_a_pointer_the_shadow_component_has_not_written_yet_is_no_error_within_its_install_grace(
    tmp_path: Path,
) -> None:
    """The configuration can reach the inference component before com.loupe.shadow's Install wrote its pointer."""
    cand = write_model(tmp_path / "cand", "8")
    digest = json.loads((cand / "model_card.json").read_text())["sha256"]["model.onnx"]
    spec = _spec(tmp_path, modelVersion="8", sha256={"model.onnx": digest})
    runner = ShadowRunner(spec, ModelSettings(), 3600, 10**6)
    for _ in range(3):
        assert not runner.manager.check()
    snap = runner.snapshot()
    assert snap["state"] == "loading" and snap["error"] is None and snap["errors"] == 0
    _pointer(tmp_path, cand, "8", digest)  # the Install step ran
    assert runner.manager.check()
    snap = runner.snapshot()
    assert snap["state"] == "running" and snap["errors"] == 0 and runner.model is not None


def test_a_long_failure_is_clipped_so_the_health_message_stays_acceptable(tmp_path: Path) -> None:
    def loader(*args: object, **kwargs: object) -> None:
        raise ModelError("onnxruntime: " + "x" * 5000)

    spec = _spec(tmp_path, dir=str(tmp_path), modelVersion="8")
    runner = ShadowRunner(spec, ModelSettings(), 3600, 10**6, loader=loader)
    assert not runner.manager.check()
    error = runner.snapshot()["error"]
    assert "onnxruntime: xxx" in error
    assert len(error) == 500 and error.endswith("…")
