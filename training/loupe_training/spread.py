"""spread: how far a test-split mAP50 can be trusted, and a champion comparison that respects it.

A test split of a few dozen photos gives a mAP50 whose spread is as large as the differences people act on
(issue 12 measured 0.72 on the project's own 31 test photos against 0.57 on unseen ones). Two tools:

* ``bootstrap`` resamples the test images with replacement and recomputes mAP50 each time with Ultralytics'
  own ``ap_per_class`` (so every resample is scored exactly like the headline number): mean, standard deviation
  and the 90 % percentile interval.
* ``paired_comparison`` resamples the *same* images for challenger and champion (their per-image results are
  paired by file name), so the noise both models share (an easy or hard draw of images) cancels: the 90 %
  interval of the difference, the share of resamples where the challenger is better, and the bar the gate
  applies.

The gate is a non-inferiority test: the challenger passes the champion check when the lower end of the paired
difference's 90 % interval (its 5th percentile) is at least ``-margin``. Written as one number the pipeline's
condition can compare with the challenger's mAP50: ``bar = champion + (difference - p05) - margin``. A clearly
better challenger passes; one that is worse by more than the noise allows does not; a tie on a noisy split
passes only when the split is precise enough to show the challenger is not worse by more than ``margin``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BOOTSTRAP_SAMPLES = 1000
GATE_MARGIN = 0.02  # the largest mAP50 loss the gate tolerates once the spread is accounted for

ImageStat = dict[str, Any]  # one image's entry of Ultralytics' DetMetrics.update_stats (tp, conf, pred_cls, ...)


def map50_of(stats: Sequence[ImageStat], index: Sequence[int] | np.ndarray | None = None) -> float:
    """mAP50 over the images ``index`` (with repeats) of ``stats``, computed like Ultralytics' validator."""
    from ultralytics.utils.metrics import ap_per_class

    chosen = [stats[i] for i in (range(len(stats)) if index is None else index)]
    if not chosen:
        return 0.0
    target_cls = np.concatenate([np.asarray(s["target_cls"]).reshape(-1) for s in chosen])
    if len(target_cls) == 0:
        return 0.0
    tp = np.concatenate([np.asarray(s["tp"]).reshape(-1, 10) for s in chosen], 0)
    conf = np.concatenate([np.asarray(s["conf"]).reshape(-1) for s in chosen])
    pred_cls = np.concatenate([np.asarray(s["pred_cls"]).reshape(-1) for s in chosen])
    if len(conf) == 0:
        return 0.0
    ap = ap_per_class(tp, conf, pred_cls, np.asarray(target_cls))[5]
    return float(ap[:, 0].mean()) if len(ap) else 0.0


def _indices(n: int, samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def _summary(values: np.ndarray) -> dict[str, Any]:
    return {
        "mean": round(float(values.mean()), 5),
        "std": round(float(values.std(ddof=1)), 5) if len(values) > 1 else 0.0,
        "ci90": [round(float(np.percentile(values, 5)), 5), round(float(np.percentile(values, 95)), 5)],
    }


def bootstrap(stats: Sequence[ImageStat], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Bootstrap spread of mAP50 over the test images: {"map50": {mean, std, ci90}, "bootstrap", "images"}."""
    if not stats:
        raise ValueError("no per-image results to resample")
    values = np.array([map50_of(stats, idx) for idx in _indices(len(stats), samples, seed)])
    return {"map50": _summary(values), "bootstrap": samples, "images": len(stats)}


def paired_comparison(
    challenger: Sequence[ImageStat],
    champion: Sequence[ImageStat],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    margin: float = GATE_MARGIN,
) -> dict[str, Any]:
    """Challenger minus champion on the same resampled images; the gate's bar for the challenger's mAP50."""
    by_name = {s["im_name"]: s for s in champion}
    missing = [s["im_name"] for s in challenger if s["im_name"] not in by_name]
    if missing or len(by_name) != len(challenger):
        raise ValueError(f"challenger and champion were not scored on the same images (e.g. {missing[:3]})")
    champ = [by_name[s["im_name"]] for s in challenger]
    observed_chal, observed_champ = map50_of(challenger), map50_of(champ)
    diffs = np.array(
        [map50_of(challenger, idx) - map50_of(champ, idx) for idx in _indices(len(challenger), samples, seed)]
    )
    difference = observed_chal - observed_champ
    low = float(np.percentile(diffs, 5))
    bar = observed_champ + (difference - low) - margin
    return {
        "difference": round(difference, 5),
        "ci90": [round(low, 5), round(float(np.percentile(diffs, 95)), 5)],
        "std": round(float(diffs.std(ddof=1)), 5),
        "p_challenger_better": round(float((diffs > 0).mean()), 4),
        "champion_bar": round(bar, 5),
        "margin": margin,
        "bootstrap": samples,
        "images": len(challenger),
    }
