"""Claims that can fail: statistics over seeds against hand computations and the verdict of every case (holds, contradicted, not shown, not tested)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from infogap.ablations.kit.claims import CONTRADICTED, HOLDS, NOT_SHOWN, NOT_TESTED, compare, mean_ci, paired_claim


def test_mean_and_t_interval_by_hand():
    m, (lo, hi) = mean_ci([1.0, 2.0, 3.0], 0.95)
    # sd = 1, se = 1/sqrt(3), t_{0.975, 2} = 4.302653
    assert m == 2.0 and hi - m == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6) and m - lo == pytest.approx(hi - m)
    m, (lo, hi) = mean_ci([1.0, 2.0, 3.0])  # the default: 90 %, t_{0.95, 2} = 2.919986
    assert hi - m == pytest.approx(2.919986 / math.sqrt(3), rel=1e-6)
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
    assert c.ci[0] == pytest.approx(-0.35 - 2.919986 * 0.05 / math.sqrt(3), rel=1e-6)  # the 90 % interval
    assert "3 seeds" in c.detail and "p = 0.00337" in c.detail


def test_paired_claim_verdicts():
    mixed = paired_claim("x falls", {0: -0.2, 1: 0.1, 2: -0.05}, "negative")
    assert mixed.verdict == NOT_SHOWN and mixed.p_value > 0.05 and "not shown: this design detects" in mixed.detail
    wrong = paired_claim("x rises", {0: -0.2, 1: -0.3}, "positive")  # t = -5 on 1 df: opposite p = 0.063, not below 0.05
    assert wrong.verdict == NOT_SHOWN and wrong.p_value > 0.5
    against = paired_claim("x rises", {0: -0.2, 1: -0.3, 2: -0.25}, "positive")  # t = -8.66 on 2 df: opposite p = 0.0065
    assert against.verdict == CONTRADICTED
    one = paired_claim("x falls", {0: -0.2}, "negative")
    assert one.verdict == NOT_SHOWN and "pointing the claimed way" in one.detail
    assert "pointing the opposite way" in paired_claim("x falls", {0: 0.2}, "negative").detail
    assert paired_claim("x falls", {}, "negative").verdict == NOT_TESTED
    same = paired_claim("x falls", {0: -0.1, 1: -0.1}, "negative")  # zero variance: documented p
    assert same.verdict == HOLDS and same.p_value == 0.0
    with pytest.raises(ValueError, match="expect"):
        paired_claim("x", {0: 1.0}, "down")


def test_the_verdict_threshold_is_a_strict_p_below_0_05():
    """p = 0.077 (one-sided t, df 2, hand-checked with scipy) shows no effect at alpha = 0.05; p = 0.05
    exactly is not below it; a significant p in the opposite direction contradicts the claim."""
    from infogap.ablations.kit.claims import effect_verdict

    near = paired_claim("x falls", {0: -0.3, 1: -0.2, 2: -0.03}, "negative")
    assert near.p_value == pytest.approx(0.077122, rel=1e-4) and near.mean < 0 and near.verdict == NOT_SHOWN
    assert effect_verdict(0.05, 0.95) == NOT_SHOWN and effect_verdict(0.0499, 0.95) == HOLDS
    assert effect_verdict(0.999, 0.001) == CONTRADICTED


def test_identical_differences_against_the_claimed_sign_have_p_one():
    wrong = paired_claim("x falls", {0: 0.1, 1: 0.1, 2: 0.1}, "negative")
    assert wrong.p_value == 1.0 and wrong.verdict == CONTRADICTED


ROWS = [{"k": k, "seed": s, "rmg": r} for (k, s, r) in [(0, 0, 0.42), (0, 1, 0.45), (0, 2, 0.42), (5, 0, 0.07), (5, 1, 0.09), (5, 2, 0.07)]]


def test_compare_pairs_by_seed_and_a_missing_arm_is_not_tested():
    c = compare(ROWS, "k", 0, 5, "rmg", "negative")
    assert c.verdict == HOLDS and c.mean == pytest.approx(-(0.35 + 0.36 + 0.35) / 3)
    assert "seed 1: 0.450 -> 0.090" in c.detail
    only_k0 = [r for r in ROWS if r["k"] == 0]
    assert compare(only_k0, "k", 0, 5, "rmg", "negative").verdict == NOT_TESTED
    # seeds without both arms are left out, not paired across seeds
    assert compare([ROWS[0], ROWS[4]], "k", 0, 5, "rmg", "negative").verdict == NOT_TESTED


# --- claims of no effect -----------------------------------------------------------------------------
def _tost_by_hand(d, margin):
    """The 90 % t-interval and the TOST p of a mean, written out: t-quantiles and tail areas from scipy."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    n, mean, se = len(d), float(np.mean(d)), float(np.std(d, ddof=1) / np.sqrt(len(d)))
    q = stats.t.ppf(0.95, n - 1)
    p = max(stats.t.sf((mean + margin) / se, n - 1), stats.t.cdf((mean - margin) / se, n - 1))
    return (mean - q * se, mean + q * se), p


def test_equivalence_verdicts_against_hand_computations():
    from infogap.ablations.kit.claims import INCONCLUSIVE, equivalence_claim

    inside = {0: 0.01, 1: -0.02, 2: 0.005}
    c = equivalence_claim("x does not move", inside, 0.05)
    (lo, hi), p = _tost_by_hand(list(inside.values()), 0.05)
    assert c.verdict == HOLDS and c.ci == pytest.approx((lo, hi)) and c.p_value == pytest.approx(p) and p < 0.05
    assert c.kind == "equivalence" and c.margin == 0.05 and "margin ±0.05" in c.detail
    outside = equivalence_claim("x does not move", {0: 0.20, 1: 0.21, 2: 0.22}, 0.05)
    assert outside.verdict == CONTRADICTED and outside.ci[0] > 0.05
    # two seeds: a t-test of the mean against 0 finds nothing (p = 0.30), which the old rule called "holds";
    # the 90 % interval [-0.043, +0.083] straddles the margin: inconclusive, with the seeds it would need
    two = equivalence_claim("x does not move", {0: 0.01, 1: 0.03}, 0.05)
    (lo, hi), _ = _tost_by_hand([0.01, 0.03], 0.05)
    assert two.verdict == INCONCLUSIVE and two.ci == pytest.approx((lo, hi)) and lo < -0.04 and hi > 0.08
    assert "about 3 seeds at this spread would settle it" in two.detail
    assert equivalence_claim("x", {0: 0.01}, 0.05).verdict == NOT_TESTED


def test_a_bound_and_an_interval_claim_by_hand():
    from infogap.ablations.kit.claims import INCONCLUSIVE, bound_claim, interval_claim

    gains = {0: 0.044, 1: 0.029, 2: 0.024}  # the published-size posthoc gains at k = 0: all above one point
    c = bound_claim("no gain of 0.01 or more", gains, 0.01)
    (lo, hi), _ = _tost_by_hand(list(gains.values()), 1.0)
    assert c.verdict == CONTRADICTED and c.ci == pytest.approx((lo, hi)) and lo > 0.01
    small = bound_claim("no gain of 0.01 or more", {0: 0.001, 1: -0.002, 2: 0.0}, 0.01)
    assert small.verdict == HOLDS and small.ci[1] < 0.01
    assert bound_claim("no gain", {0: 0.0, 1: 0.02}, 0.01).verdict == INCONCLUSIVE
    assert interval_claim("slope 0", 0.05, (-0.1, 0.15), 0.2, units=15).verdict == HOLDS
    assert interval_claim("slope 0", 0.4, (0.3, 0.5), 0.2, units=15).verdict == CONTRADICTED
    wide = interval_claim("slope 0", 0.05, (-0.3, 0.4), 0.2, units=15)
    assert wide.verdict == INCONCLUSIVE and "about 82 runs" in wide.detail  # 15 x (0.35 / 0.15)^2 = 81.7, rounded up


def test_a_sanity_check_is_not_a_claim():
    from infogap.ablations.kit.claims import CHECK_FAILED, CHECK_OK, sanity_check

    assert sanity_check("centroids equal after the shift", True).verdict == CHECK_OK
    assert sanity_check("centroids equal after the shift", False).verdict == CHECK_FAILED
    assert sanity_check("centroids equal after the shift", None).verdict == "not tested"  # no data is not a failure
    assert sanity_check("x", True).kind == "sanity"


def test_a_failed_positive_control_makes_the_other_claims_not_testable():
    from infogap.ablations.kit.claims import CONTROL, NOT_TESTABLE, apply_controls, cite, sanity_check

    effect = paired_claim("x falls", {0: -0.30, 1: -0.40, 2: -0.35}, "negative")
    empty = paired_claim("y falls", {}, "negative")
    check = sanity_check("centroids equal", True)
    good = cite([paired_claim("planted rises", {0: 0.5, 1: 0.6, 2: 0.55}, "positive")], "planted", CONTROL)
    bad = cite([paired_claim("planted rises", {0: 0.5, 1: -0.6, 2: 0.05}, "positive")], "planted", CONTROL)
    assert [c.verdict for c in apply_controls([effect, empty, check, *good])] == [HOLDS, HOLDS, NOT_TESTED, "check passed"]  # control first
    out = apply_controls([effect, empty, check, *bad])
    assert [c.verdict for c in out] == [NOT_SHOWN, NOT_TESTABLE, NOT_TESTED, "check passed"]
    assert "verdict otherwise: holds" in out[1].detail and "positive control did not hold (not shown)" in out[1].detail
    assert [c.verdict for c in apply_controls([effect, check])] == [HOLDS, "check passed"]  # no control: nothing changes
    # a claim across sweep points against the controls of every point
    assert apply_controls([effect], controls=bad)[0].verdict == NOT_TESTABLE
