"""The canary's statistical verdict against worked numbers (each value below is worked by hand in its comment)."""

from __future__ import annotations

import math

import pytest

from loupe.deployment.canary_stats import CohortCounts, Policy, decide, fisher_greater, normal_sf, z_greater


def test_normal_tail_at_the_usual_quantiles() -> None:
    assert normal_sf(0.0) == pytest.approx(0.5)
    assert normal_sf(1.959964) == pytest.approx(0.025, abs=1e-6)
    assert normal_sf(1.644854) == pytest.approx(0.05, abs=1e-6)


def test_fisher_one_sided_against_hypergeometric_sums() -> None:
    # tea tasting [[3,1],[1,3]]: P(X>=3) = (C(4,3)C(4,1) + C(4,4)C(4,0)) / C(8,4) = (16 + 1) / 70
    assert fisher_greater(3, 1, 1, 3) == pytest.approx(17 / 70)
    # [[8,2],[1,5]]: row 10, column 9, N 16: (C(9,8)C(7,2) + C(9,9)C(7,1)) / C(16,10) = (189 + 7) / 8008
    assert fisher_greater(8, 2, 1, 5) == pytest.approx(196 / 8008)
    # the first row has the smaller rate: the one-sided tail is large
    assert fisher_greater(1, 5, 8, 2) > 0.99


def test_z_test_with_and_without_margin() -> None:
    # 60/200 vs 40/200: se = sqrt(.3*.7/200 + .2*.8/200) = sqrt(0.00185) = 0.0430116
    z, p = z_greater(60, 200, 40, 200, 0.0)
    assert z == pytest.approx(0.1 / math.sqrt(0.00185))  # 2.32495
    assert p == pytest.approx(0.010037, abs=1e-5)
    z, p = z_greater(60, 200, 40, 200, 0.02)
    assert z == pytest.approx(0.08 / math.sqrt(0.00185))  # 1.85996
    assert p == pytest.approx(0.031445, abs=1e-5)


def test_a_canary_twice_as_uncertain_is_rolled_back_with_its_numbers() -> None:
    # 80/400 vs 120/1200: se = sqrt(.2*.8/400 + .1*.9/1200) = sqrt(0.000475); z = (0.1 - 0.02) / se = 3.6707
    v = decide(CohortCounts(400, 80, 100, 0, 30.0), CohortCounts(1200, 120, 300, 1, 28.0))
    assert v.verdict == "rollback"
    uncertain = v.tests[0]
    assert (uncertain.metric, uncertain.method, uncertain.worse) == ("uncertain_share", "z", True)
    assert uncertain.statistic == pytest.approx(3.6707, abs=1e-4)
    assert "uncertain_share 0.2000 vs 0.1000" in v.reasons[0]


def test_a_canary_within_the_margin_is_promoted() -> None:
    # 44/400 = 0.11 vs 0.10: z = (0.01 - 0.02) / sqrt(.11*.89/400 + .1*.9/1200) < 0, p > 0.5
    v = decide(CohortCounts(400, 44, 100, 0, 30.0), CohortCounts(1200, 120, 300, 1, 28.0))
    assert v.verdict == "promote", v.reasons
    assert v.tests[0].p_value > 0.5


def test_the_ng_rate_is_tested_in_both_directions_each_at_half_alpha_and_held_without_labels() -> None:
    champion = CohortCounts(1000, 50, 250)
    more = decide(CohortCounts(1000, 50, 400), champion)  # 0.40 vs 0.25: scraps good parts, or finds more defects
    fewer = decide(CohortCounts(1000, 50, 100), champion)  # 0.10 vs 0.25: misses defects, or scraps fewer parts
    # counts alone cannot tell which: labels decide (test_canary_precision.py), and without them the canary waits
    assert more.verdict == fewer.verdict == "hold"
    assert [t.direction for t in more.tests if t.worse] == ["higher"]
    assert [t.direction for t in fewer.tests if t.worse] == ["lower"]
    assert all(t.alpha == 0.025 for t in more.tests if t.metric == "ng_rate")


def test_too_few_frames_is_insufficient_and_the_design_effect_counts() -> None:
    assert decide(CohortCounts(99, 0, 0), CohortCounts(500, 0, 0)).verdict == "insufficient"
    # 300 frames, but frames come in runs of ~4 of one part: 75 effective frames < 100
    v = decide(CohortCounts(300, 3, 30), CohortCounts(900, 9, 90), Policy(design_effect=4))
    assert v.verdict == "insufficient"
    assert "design effect 4" in v.reasons[0]


def test_small_counts_use_fishers_exact_test_without_margin() -> None:
    # 6/120 uncertain vs 1/120: an expected cell (3.5) under 5, so the exact test: P(X>=6), X hypergeometric (N 240,
    # K 7, n 120) = (C(7,6)C(233,114) + C(233,113)) / C(240,120), near Binomial(7, 1/2)'s 8/128 = 0.0625
    v = decide(CohortCounts(120, 6, 30), CohortCounts(120, 1, 30))
    test = v.tests[0]
    assert test.method == "fisher" and test.margin == 0.0
    assert test.p_value == pytest.approx(fisher_greater(6, 114, 1, 119), abs=1e-6)
    assert test.p_value == pytest.approx(0.0597, abs=1e-3)
    assert v.verdict == "promote"  # p = 0.06: not worse at alpha 0.05


def test_guards_errors_and_latency() -> None:
    champion = CohortCounts(1000, 100, 250, errors=0, latency_p95_ms=20.0)
    slow = decide(CohortCounts(1000, 100, 250, errors=0, latency_p95_ms=31.0), champion)
    failing = decide(CohortCounts(1000, 100, 250, errors=20, latency_p95_ms=20.0), champion)
    assert slow.verdict == "rollback" and "latency p95 31.0 ms vs 20.0 ms" in slow.reasons[0]
    # three times slower, but by 2 ms: the noise of a busy device, not a regression
    tiny = CohortCounts(1000, 100, 250, errors=0, latency_p95_ms=1.0)
    assert decide(CohortCounts(1000, 100, 250, errors=0, latency_p95_ms=3.0), tiny).verdict == "promote"
    assert failing.verdict == "rollback" and failing.reasons[0].startswith("errors 20/1000")


def test_counts_that_do_not_add_up_are_refused() -> None:
    with pytest.raises(ValueError, match="more uncertain"):
        CohortCounts(10, 11, 0)
    with pytest.raises(ValueError, match="alpha"):
        Policy(alpha=1.5)
