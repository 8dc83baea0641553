"""The bootstrap spread of a test-split mAP50 and the paired champion comparison the gate uses."""

from __future__ import annotations

import numpy as np
import pytest

from loupe_training import spread as sp


def _image(name: str, hits: list[float], misses: list[float], targets: int) -> dict:
    """One image's matching result: detections that hit a target (at every IoU) or not, with their confidences."""
    confs = hits + misses
    tp = np.zeros((len(confs), 10), dtype=bool)
    tp[: len(hits)] = True
    return {
        "im_name": name,
        "tp": tp,
        "conf": np.array(confs),
        "pred_cls": np.zeros(len(confs)),
        "target_cls": np.zeros(targets),
        "target_img": np.zeros(1 if targets else 0),
    }


def _model(n: int, found: float, seed: int) -> list[dict]:
    """n images of one target each; the model finds a share ``found`` of them (a false positive on the rest)."""
    rng = np.random.default_rng(seed)
    return [
        _image(f"{i:03d}.jpg", [0.9], [], 1) if rng.random() < found else _image(f"{i:03d}.jpg", [], [0.8], 1)
        for i in range(n)
    ]


def test_map50_of_matches_ultralytics_on_the_whole_split():
    from ultralytics.utils.metrics import ap_per_class

    stats = _model(40, 0.7, 1)
    tp = np.concatenate([s["tp"] for s in stats])
    conf = np.concatenate([s["conf"] for s in stats])
    expected = ap_per_class(tp, conf, np.zeros(len(conf)), np.zeros(40))[5][:, 0].mean()
    assert sp.map50_of(stats) == pytest.approx(expected)
    assert sp.map50_of([_image("a.jpg", [], [], 0)]) == 0.0  # no target in the resample


def test_bootstrap_spread_shrinks_with_more_images_and_brackets_the_score():
    small = sp.bootstrap(_model(20, 0.6, 2), samples=300)
    large = sp.bootstrap(_model(200, 0.6, 2), samples=300)
    assert small["images"] == 20 and small["bootstrap"] == 300
    assert large["map50"]["std"] < small["map50"]["std"]
    whole = sp.map50_of(_model(20, 0.6, 2))
    lo, hi = small["map50"]["ci90"]
    assert lo < whole < hi and hi - lo > 0.1  # 20 images: a wide interval
    assert sp.bootstrap(_model(20, 0.6, 2), samples=300) == small  # seeded: the same numbers every run


def test_paired_comparison_better_worse_and_tied():
    champion = _model(60, 0.5, 3)
    better = [_image(s["im_name"], [0.9], [], 1) for s in champion]  # finds every target
    cmp = sp.paired_comparison(better, champion, samples=300)
    assert cmp["difference"] > 0.3 and cmp["ci90"][0] > 0 and cmp["p_challenger_better"] == 1.0
    assert sp.map50_of(better) >= cmp["champion_bar"]  # passes the gate
    worse = sp.paired_comparison(champion, better, samples=300)
    assert worse["ci90"][1] < 0 and sp.map50_of(champion) < worse["champion_bar"]  # refused
    tied = sp.paired_comparison(champion, list(reversed(champion)), samples=300)  # same model, other order
    assert tied["difference"] == 0 and tied["ci90"] == [0.0, 0.0]
    assert tied["champion_bar"] == pytest.approx(sp.map50_of(champion) - sp.GATE_MARGIN)


def test_paired_comparison_needs_the_same_images():
    a = _model(10, 0.5, 4)
    b = [dict(s, im_name="other-" + s["im_name"]) for s in a]
    with pytest.raises(ValueError, match="same images"):
        sp.paired_comparison(a, b)
