"""The demo's v2 − v1 gain on the held-out set comes with its paired bootstrap spread, in summary.json and the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from loupe_local.demo import evaluation as demo_evaluation
from loupe_local.demo import report


def _image(name: str, found: bool) -> dict:
    """One image with one scratch: found (a confident hit) or missed (a false positive elsewhere instead)."""
    tp = np.zeros((1, 10), dtype=bool)
    tp[0] = found
    return {
        "im_name": name,
        "tp": tp,
        "conf": np.array([0.9 if found else 0.8]),
        "pred_cls": np.zeros(1),
        "target_cls": np.zeros(1),
        "target_img": np.zeros(1),
    }


def _model(found: list[bool]) -> list[dict]:
    return [_image(f"{i:03d}.jpg", f) for i, f in enumerate(found)]


def test_a_clear_gain_has_an_interval_above_zero_and_a_tie_straddles_it() -> None:
    rng = np.random.default_rng(5)
    v1_found = list(rng.random(40) < 0.4)
    v1 = _model(v1_found)
    v2 = _model([True] * 40)  # v2 finds every scratch v1 found and the others

    gain = demo_evaluation.compare(v2, v1)
    assert gain is not None and gain["images"] == 40 and gain["bootstrap"] == 1000
    low, high = gain["ci90"]
    assert 0 < low < gain["difference"] < high and gain["p_challenger_better"] == 1.0

    tie = demo_evaluation.compare(_model(v1_found[::-1]), v1)  # as good on average, different images
    assert tie is not None and tie["ci90"][0] < 0 < tie["ci90"][1]
    assert demo_evaluation.compare([], v1) is None


def test_the_spread_is_on_the_page(tmp_path: Path) -> None:
    gain = {"difference": 0.098, "ci90": [0.031, 0.171], "p_challenger_better": 0.991, "bootstrap": 1000, "images": 31}
    text = report.gain_spread(gain)
    assert text == "(90 % interval +0.031 to +0.171; v2 ahead in 99% of 1000 resamples of the 31 images)"
    page = report.write_html(tmp_path, {"improvement_map50_phase2": 0.098, "improvement_paired": gain}, {})
    html = page.read_text()
    assert "<b>0.098</b> mAP50" in html and "90 % interval +0.031 to +0.171" in html
    assert report.gain_spread(None) == ""
