"""The canary's verdict: is the challenger, serving a cohort of the fleet, worse than the champion serving the rest
over the same window of frames?

The test, stated:

- **Rates** (events per frame): the uncertain-frame share and the NG rate (frames with at least one detection).
  For each, a one-sided test of "the canary is worse by more than ``margin``":
  H0: p_canary - p_champion <= margin, H1: p_canary - p_champion > margin.
  With enough events in every cell of the 2x2 table (each expected count >= ``EXACT_BELOW``) it is the Wald
  z-test of a difference of proportions with unpooled variance (the usual non-inferiority form):
  z = (p_c - p_b - margin) / sqrt(p_c(1 - p_c)/n_c + p_b(1 - p_b)/n_b), p = 1 - Phi(z).
  With fewer, the normal approximation is poor and the test is Fisher's exact one-sided test on the 2x2 table
  (hypergeometric tail), which cannot carry a margin: it tests margin 0, the stricter question, on purpose (a small
  sample can only hold a model back, never wave it through).
  The NG rate can go wrong both ways (more NG: good parts scrapped; fewer: defects missed), so it is tested in
  both directions, each at ``alpha / 2`` (Bonferroni); the uncertain share only upwards, at ``alpha``.
- **Minimum sample**: each cohort must have seen ``min_frames`` frames (after the design effect, below); a window
  that ends (timeout) with fewer is ``insufficient``, and an insufficient canary is not promoted.
- **Guards**, no test: the canary's error rate may exceed the champion's by at most ``max_error_rate_increase``, and
  its latency p95 may be at most ``max_latency_ratio`` times the champion's (a rise under
  ``min_latency_increase_ms`` is never counted: a few milliseconds are scheduling noise on a busy device). A
  cohort's p95 is its slowest device's p95 sustained over that device's last two health windows (the smaller of
  the two): one window a busy machine slowed is not the model's latency, and with one window there is no p95 to
  compare (a CI run once rolled a good canary back on one such window: 270 ms against 83 ms). A window of fewer
  than ``fleet_serving.MIN_FRAMES_FOR_P95`` frames gives no p95 at all: it would be its slowest frame.

Assumptions, said plainly: the test treats frames as independent Bernoulli trials. They are not: consecutive frames
of one camera see the same part, the same lighting, the same drift, so the effective sample is smaller than the
frame count and the p-values above are too small. ``design_effect`` (Kish: variance inflation of clustered samples)
divides every count before testing; 1.0 assumes independence, a value near the number of frames per part is honest.
The two cohorts are different devices (different cameras, lines), so a difference may be the device's, not the
model's; a cohort chosen at random (by a hash of the thing name) keeps that from being systematic, not from
happening. Counters are summed over health windows, and a device that restarts mid-window loses its partial window.

**Labels: the NG rate explained, or held.** A model that finds defects the champion misses calls more frames NG;
so does one that scraps good parts. Counts alone cannot tell the two apart, so an NG rate beyond its margin (either
direction) is *not* a rollback by itself. The judge is what people labeled: the cohorts' uncertain frames come back
to the labeling app with the boxes the device predicted (:mod:`loupe.deployment.canary_labels`), and per model

- **precision** = true positives / predicted boxes on its labeled frames; a predicted box is a true positive when a
  labeled box of the same class overlaps it with IoU >= 0.5, each labeled box matched once (the most confident
  prediction first). Boxes, not frames, are the trials: a frame with three boxes weighs three.
- the frame-level **NG call correct** share (labeled frames the model called NG whose labels hold a defect) is
  reported beside it, not tested (it is precision at the frame's grain, and the frames are few).

With at least ``min_labeled`` labeled frames of each model and predicted boxes on both sides, the canary's
precision is tested one-sided against the champion's with the same machinery as the rates above (z with the
margin, Fisher below :data:`EXACT_BELOW`): H0: prec_champion - prec_canary <= ``precision_margin``, H1: worse by
more, at ``alpha``. Worse: rollback, with the numbers. Not worse: the NG shift is explained by the labels and,
with nothing else against it, the canary is promoted. Fewer labels than that: the verdict is ``hold`` (the
workflow waits for labels or a person, and at its hold timeout rolls back, the safe side). Labeled precision that
is worse counts against a canary whether or not its NG rate moved. Errors, latency and the uncertain share decide
as before: any of them worse is a rollback whatever the labels say.

Choices, said plainly: the labeled frames are the *uncertain* ones (what devices send back), not a random sample,
so precision is measured where the models hesitate, which is where they differ most, and is not the precision on
all frames; both models are measured the same way, which is what the comparison needs. The design effect applies
to the boxes too. A champion with no predicted box on its labeled frames has no precision to compare with: hold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

EXACT_BELOW = 5  # an expected cell count under this: Fisher's exact test instead of the normal approximation


@dataclass(frozen=True)
class CohortCounts:
    """What one cohort's devices reported for one model over the window (sums of their health windows)."""

    frames: int = 0
    uncertain: int = 0
    ng: int = 0  # frames with at least one detection
    errors: int = 0
    latency_p95_ms: float | None = None  # the slowest device's p95, sustained over two health windows

    def __post_init__(self) -> None:
        for name in ("frames", "uncertain", "ng", "errors"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.uncertain > self.frames or self.ng > self.frames:
            raise ValueError(f"more uncertain ({self.uncertain}) or NG ({self.ng}) frames than frames ({self.frames})")


@dataclass(frozen=True)
class Policy:
    alpha: float = 0.05
    min_frames: int = 100
    uncertain_margin: float = 0.02  # absolute: two points of uncertain share
    ng_margin: float = 0.05
    max_error_rate_increase: float = 0.01
    max_latency_ratio: float = 1.5
    # ... and slower by more than this (ms): a p95 of 1 ms becoming 3 ms is a ratio of 3 but scheduling noise on a
    # busy device, not a regression anyone on a line would notice
    min_latency_increase_ms: float = 10.0
    design_effect: float = 1.0
    precision_margin: float = 0.05  # absolute: five points of labeled precision
    min_labeled: int = 30  # labeled frames of each model before labels may explain an NG shift

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if self.min_frames < 1 or self.design_effect < 1 or self.min_labeled < 1:
            raise ValueError("min_frames, min_labeled and design_effect must be at least 1")
        margins = (self.uncertain_margin, self.ng_margin, self.precision_margin, self.max_error_rate_increase)
        if min(margins) < 0 or self.max_latency_ratio < 1 or self.min_latency_increase_ms < 0:
            raise ValueError("margins must not be negative and max_latency_ratio must be at least 1")


@dataclass(frozen=True)
class LabeledCounts:
    """One model's labeled frames over the window (:func:`loupe.deployment.canary_labels.labeled_precision`)."""

    frames: int = 0  # labeled frames whose predicted boxes were kept
    predicted: int = 0  # predicted boxes on them
    true_positives: int = 0
    ng_calls: int = 0  # of the frames, those with at least one predicted box
    ng_correct: int = 0  # of those, the frames whose labels hold at least one box
    skipped: int = 0  # labeled frames of the model that cannot be compared (no boxes kept, rotated by EXIF)

    def __post_init__(self) -> None:
        for name in ("frames", "predicted", "true_positives", "ng_calls", "ng_correct", "skipped"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.true_positives > self.predicted or self.ng_correct > self.ng_calls or self.ng_calls > self.frames:
            raise ValueError("more true positives than boxes, or more NG calls (correct) than frames (calls)")

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.predicted if self.predicted else None

    @property
    def ng_call_correct(self) -> float | None:
        return self.ng_correct / self.ng_calls if self.ng_calls else None

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "precision": _rounded(self.precision),
            "ng_call_correct": _rounded(self.ng_call_correct),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass
class RateTest:
    metric: str
    direction: str  # "higher" (the canary's rate is larger) or "lower"
    canary: float
    champion: float
    margin: float
    method: str  # "z" or "fisher"
    statistic: float | None
    p_value: float
    alpha: float
    worse: bool


@dataclass
class Verdict:
    verdict: str  # "promote", "rollback", "hold" (an NG shift that labels have yet to explain) or "insufficient"
    reasons: list[str] = field(default_factory=list)
    tests: list[RateTest] = field(default_factory=list)
    canary: dict[str, Any] = field(default_factory=dict)
    champion: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)  # {"canary": LabeledCounts.to_json(), "champion": ...}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(a: int, b: int, c: int, d: int) -> float:
    """One-sided Fisher exact p-value of the table [[a, b], [c, d]] (rows: canary, champion; columns: event, no
    event) for "the first row has the larger event rate": P(X >= a) with X hypergeometric given the margins."""
    row1, col1, total = a + b, a + c, a + b + c + d
    lo, hi = max(0, row1 + col1 - total), min(row1, col1)
    denom = _log_comb(total, row1)
    tail = 0.0
    for x in range(max(a, lo), hi + 1):
        tail += math.exp(_log_comb(col1, x) + _log_comb(total - col1, row1 - x) - denom)
    return min(1.0, tail)


def z_greater(x1: float, n1: float, x2: float, n2: float, margin: float) -> tuple[float, float]:
    """Wald z and one-sided p-value for H1: p1 - p2 > margin (unpooled variance)."""
    p1, p2 = x1 / n1, x2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    diff = p1 - p2 - margin
    if se == 0:  # both rates 0 or 1: the difference is what it is
        z = math.inf if diff > 0 else -math.inf
        return z, 0.0 if diff > 0 else 1.0
    z = diff / se
    return z, normal_sf(z)


def rate_worse(
    metric: str,
    direction: str,
    canary: tuple[float, float],
    champion: tuple[float, float],
    margin: float,
    alpha: float,
) -> RateTest:
    """One one-sided test: ``canary``/``champion`` are (events, frames), already divided by the design effect."""
    (xc, nc), (xb, nb) = canary, champion
    if direction == "lower":  # the canary's rate lower by more than margin = its non-events higher by more
        xc, xb = nc - xc, nb - xb
    total, events = nc + nb, xc + xb
    expected = [nc * events / total, nc * (total - events) / total, nb * events / total, nb * (total - events) / total]
    if min(expected) < EXACT_BELOW:
        a, c = round(xc), round(xb)
        p = fisher_greater(a, round(nc) - a, c, round(nb) - c)
        method, stat, used_margin = "fisher", None, 0.0
    else:
        stat, p = z_greater(xc, nc, xb, nb, margin)
        method, used_margin = "z", margin
    return RateTest(
        metric=metric,
        direction=direction,
        canary=round(canary[0] / canary[1], 6),
        champion=round(champion[0] / champion[1], 6),
        margin=used_margin,
        method=method,
        statistic=None if stat is None or math.isinf(stat) else round(stat, 4),
        p_value=round(p, 6),
        alpha=alpha,
        worse=p < alpha,
    )


def decide(
    canary: CohortCounts,
    champion: CohortCounts,
    policy: Policy | None = None,
    labels: tuple[LabeledCounts, LabeledCounts] | None = None,
) -> Verdict:
    """The canary's verdict over one window: ``promote`` (not worse beyond the margins; an NG shift explained by
    labeled precision), ``rollback`` (worse, with each reason and its numbers), ``hold`` (the NG rate moved beyond its
    margin and too few labeled frames say whether for the better) or ``insufficient`` (too few frames to say; never
    promoted). ``labels`` are (canary, champion) labeled counts over the same window."""
    policy = policy or Policy()
    out = Verdict(
        verdict="promote", canary=asdict(canary), champion=asdict(champion), policy=asdict(policy), reasons=[]
    )
    if labels is not None:
        out.labels = {"canary": labels[0].to_json(), "champion": labels[1].to_json()}
    deff = policy.design_effect
    nc, nb = canary.frames / deff, champion.frames / deff
    if nc < policy.min_frames or nb < policy.min_frames:
        out.verdict = "insufficient"
        out.reasons.append(
            f"too few frames: canary {canary.frames}, champion {champion.frames} (each needs {policy.min_frames}"
            + (f" x design effect {deff:g}" if deff != 1 else "")
            + ")"
        )
        return out
    checks = [
        ("uncertain_share", "higher", canary.uncertain, champion.uncertain, policy.uncertain_margin, policy.alpha),
        ("ng_rate", "higher", canary.ng, champion.ng, policy.ng_margin, policy.alpha / 2),
        ("ng_rate", "lower", canary.ng, champion.ng, policy.ng_margin, policy.alpha / 2),
    ]
    ng_shift: list[str] = []
    for metric, direction, xc, xb, margin, alpha in checks:
        test = rate_worse(metric, direction, (xc / deff, nc), (xb / deff, nb), margin, alpha)
        out.tests.append(test)
        if test.worse:
            why = (
                f"{metric} {test.canary:.4f} vs {test.champion:.4f}: {direction} beyond margin {test.margin:g}"
                f" ({test.method}, p={test.p_value:.4g} < {alpha:g})"
            )
            (ng_shift if metric == "ng_rate" else out.reasons).append(why)
    err_c, err_b = canary.errors / canary.frames, champion.errors / champion.frames
    if err_c - err_b > policy.max_error_rate_increase:
        out.reasons.append(
            f"errors {canary.errors}/{canary.frames} vs {champion.errors}/{champion.frames}: rate up by"
            f" {err_c - err_b:.4f} > {policy.max_error_rate_increase:g}"
        )
    if canary.latency_p95_ms and champion.latency_p95_ms:
        ratio = canary.latency_p95_ms / champion.latency_p95_ms
        increase = canary.latency_p95_ms - champion.latency_p95_ms
        if ratio > policy.max_latency_ratio and increase > policy.min_latency_increase_ms:
            out.reasons.append(
                f"latency p95 {canary.latency_p95_ms:.1f} ms vs {champion.latency_p95_ms:.1f} ms: x{ratio:.2f}"
                f" > x{policy.max_latency_ratio:g} and +{increase:.1f} ms > {policy.min_latency_increase_ms:g} ms"
            )
    precision = _precision_test(labels, policy)
    if isinstance(precision, RateTest):
        out.tests.append(precision)
        if precision.worse:
            out.reasons.append(
                f"labeled precision {precision.canary:.4f} vs {precision.champion:.4f}: lower beyond margin"
                f" {precision.margin:g} ({precision.method}, p={precision.p_value:.4g} < {policy.alpha:g};"
                f" {_label_numbers(labels)})"
            )
    if out.reasons:  # worse on something labels cannot excuse (or worse on the labels themselves)
        out.verdict = "rollback"
        out.reasons.extend(ng_shift)
        return out
    if not ng_shift:
        return out
    if isinstance(precision, RateTest):
        out.reasons = [
            f"the NG shift is explained by labels: precision {precision.canary:.4f} vs {precision.champion:.4f}"
            f" (not lower beyond margin {precision.margin:g}, {precision.method}, p={precision.p_value:.4g};"
            f" {_label_numbers(labels)})",
            *ng_shift,
        ]
        return out
    out.verdict = "hold"
    out.reasons = [*ng_shift, f"held for labels or a person: {precision}"]
    return out


def _label_numbers(labels: tuple[LabeledCounts, LabeledCounts] | None) -> str:
    assert labels is not None
    c, b = labels
    return (
        f"canary {c.true_positives}/{c.predicted} boxes on {c.frames} labeled frames,"
        f" champion {b.true_positives}/{b.predicted} on {b.frames}"
    )


def _precision_test(labels: tuple[LabeledCounts, LabeledCounts] | None, policy: Policy) -> RateTest | str:
    """The one-sided test of the canary's labeled precision against the champion's, or why it cannot run yet."""
    if labels is None:
        return f"no labeled frames read (each model needs {policy.min_labeled})"
    c, b = labels
    if c.frames < policy.min_labeled or b.frames < policy.min_labeled:
        return f"labeled frames: canary {c.frames}, champion {b.frames} (each needs {policy.min_labeled})"
    if not c.predicted or not b.predicted:
        who = "canary" if not c.predicted else "champion"
        return f"the {who}'s {(c if who == 'canary' else b).frames} labeled frames hold no predicted box: no precision"
    deff = policy.design_effect
    return rate_worse(
        "precision",
        "lower",
        (c.true_positives / deff, c.predicted / deff),
        (b.true_positives / deff, b.predicted / deff),
        policy.precision_margin,
        policy.alpha,
    )
