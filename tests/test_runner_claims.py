"""Claims that can fail: statistics over seeds against hand computations and the verdict of every case (holds, does not hold, direction only, not tested)."""
from __future__ import annotations

import math

import pytest

from infogap.ablations.runner.claims import (
    HOLDS,
    NOT_TESTED,
    compare,
    mean_ci,
    paired_claim,
)


def test_mean_and_t_interval_by_hand():
    m, (lo, hi) = mean_ci([1.0, 2.0, 3.0])
    # sd = 1, se = 1/sqrt(3), t_{0.975, 2} = 4.302653
    assert m == 2.0 and hi - m == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6) and m - lo == pytest.approx(hi - m)
    one = mean_ci([0.5])
    assert one[0] == 0.5 and math.isnan(one[1][0]) and math.isnan(one[1][1])  # one seed: no interval
    assert math.isnan(mean_ci([])[0]) and mean_ci([1.0, float("nan"), 3.0])[0] == 2.0


def test_paired_claim_statistics_by_hand():
    c = paired_claim("x falls", {0: -0.30, 1: -0.40, 2: -0.35}, "negative")
    # mean -0.35, sd 0.05, se 0.05/sqrt(3); t = -12.124, df 2; one-sided p = P(T_2 < t) = 0.003367
    assert c.verdict == HOLDS and c.seeds == 3
    assert c.mean == pytest.approx(-0.35)
    assert c.p_value == pytest.approx(0.0033670, rel=1e-3)
    assert c.effect_size == pytest.approx(-7.0)
    assert c.ci[0] == pytest.approx(-0.35 - 4.302653 * 0.05 / math.sqrt(3), rel=1e-6)
    assert "3 seeds" in c.detail and "p = 0.00337" in c.detail


def test_paired_claim_verdicts():
    mixed = paired_claim("x falls", {0: -0.2, 1: 0.1, 2: -0.05}, "negative")
    assert mixed.verdict == "does NOT hold" and mixed.p_value > 0.05
    wrong = paired_claim("x rises", {0: -0.2, 1: -0.3}, "positive")
    assert wrong.verdict == "does NOT hold" and wrong.p_value > 0.5
    assert paired_claim("x falls", {0: -0.2}, "negative").verdict == "direction only (right)"
    assert paired_claim("x falls", {0: 0.2}, "negative").verdict == "direction only (wrong)"
    assert paired_claim("x falls", {}, "negative").verdict == NOT_TESTED
    same = paired_claim("x falls", {0: -0.1, 1: -0.1}, "negative")  # zero variance: documented p
    assert same.verdict == HOLDS and same.p_value == 0.0
    with pytest.raises(ValueError, match="expect"):
        paired_claim("x", {0: 1.0}, "down")


def test_the_verdict_threshold_is_a_strict_p_below_0_05():
    """p = 0.077 (one-sided t, df 2, hand-checked with scipy) is no effect at alpha = 0.05; p = 0.05 exactly
    is not below it; a significant p with the wrong sign never holds."""
    from infogap.ablations.runner.claims import FAILS, effect_verdict

    near = paired_claim("x falls", {0: -0.3, 1: -0.2, 2: -0.03}, "negative")
    assert near.p_value == pytest.approx(0.077122, rel=1e-4) and near.mean < 0 and near.verdict == FAILS
    assert effect_verdict(True, 0.05) == FAILS and effect_verdict(True, 0.0499) == HOLDS
    assert effect_verdict(False, 0.001) == FAILS


def test_identical_differences_against_the_claimed_sign_have_p_one():
    wrong = paired_claim("x falls", {0: 0.1, 1: 0.1, 2: 0.1}, "negative")
    assert wrong.p_value == 1.0 and wrong.verdict == "does NOT hold"


ROWS = [{"k": k, "seed": s, "rmg": r} for (k, s, r) in [(0, 0, 0.42), (0, 1, 0.45), (0, 2, 0.42), (5, 0, 0.07), (5, 1, 0.09), (5, 2, 0.07)]]


def test_compare_pairs_by_seed_and_a_missing_arm_is_not_tested():
    c = compare(ROWS, "k", 0, 5, "rmg", "negative")
    assert c.verdict == HOLDS and c.mean == pytest.approx(-(0.35 + 0.36 + 0.35) / 3)
    assert "seed 1: 0.450 -> 0.090" in c.detail
    only_k0 = [r for r in ROWS if r["k"] == 0]
    assert compare(only_k0, "k", 0, 5, "rmg", "negative").verdict == NOT_TESTED
    # seeds without both arms are left out, not paired across seeds
    assert compare([ROWS[0], ROWS[4]], "k", 0, 5, "rmg", "negative").verdict == NOT_TESTED
