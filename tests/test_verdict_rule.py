"""The verdict rule of every kind of claim on a hand table of boundary cases: p at alpha in either
direction, an interval touching an equivalence margin, constant differences, one unit, a unit without a
value; and the power statements of a "not shown" verdict against a plain noncentral-t search. Each row
is fixed by hand from the rule as docs/ablations.md states it, not from the code under test; moving a
strict inequality to a non-strict one (or the reverse), or swapping the two directions, changes a row."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from infogap.ablations.kit.claims import (
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    NOT_SHOWN,
    NOT_TESTED,
    bound_claim,
    coefficient_claim,
    correlation_claim,
    effect_verdict,
    equivalence_claim,
    interval_claim,
    paired_claim,
)

NAN = float("nan")


@pytest.mark.parametrize("p_claimed, p_opposite, verdict", [
    (0.0499, 0.9501, HOLDS),
    (0.05, 0.95, NOT_SHOWN),  # p = alpha does not reject
    (0.0501, 0.9499, NOT_SHOWN),
    (0.9501, 0.0499, CONTRADICTED),  # the opposite test rejects
    (0.95, 0.05, NOT_SHOWN),
    (NAN, NAN, NOT_SHOWN),
    (NAN, 0.01, CONTRADICTED),
])
def test_an_effect_holds_is_contradicted_or_is_not_shown(p_claimed, p_opposite, verdict):
    assert effect_verdict(p_claimed, p_opposite) == verdict


@pytest.mark.parametrize("ci, verdict", [
    ((-0.1999, 0.1999), HOLDS),  # inside (-0.2, +0.2)
    ((-0.2, 0.1), INCONCLUSIVE),  # touches the lower margin: not inside
    ((-0.1, 0.2), INCONCLUSIVE),  # touches the upper margin
    ((0.2, 0.5), CONTRADICTED),  # wholly outside, touching the margin from outside
    ((0.1999, 0.5), INCONCLUSIVE),  # straddles +0.2
    ((-0.5, -0.2), CONTRADICTED),
    ((-0.5, 0.5), INCONCLUSIVE),
])
def test_an_interval_claim_against_a_margin_of_0_2(ci, verdict):
    estimate = (ci[0] + ci[1]) / 2
    assert interval_claim("c", estimate, ci, 0.2, units=10).verdict == verdict


@pytest.mark.parametrize("values, verdict", [
    ({0: 0.1999, 1: 0.1999, 2: 0.1999}, HOLDS),  # constant inside the margin: no spread, |mean| < margin
    ({0: 0.2, 1: 0.2, 2: 0.2}, CONTRADICTED),  # constant at the margin: |mean| < margin is false
    ({0: -0.3, 1: -0.3, 2: -0.3}, CONTRADICTED),
    ({0: 0.05}, NOT_TESTED),  # one unit has no interval
    ({}, NOT_TESTED),
])
def test_an_equivalence_claim_with_constant_values_and_too_few_units(values, verdict):
    assert equivalence_claim("c", values, 0.2).verdict == verdict


def test_an_equivalence_claim_with_spread():
    # mean 0, sd 0.01, n = 3: 90 % interval +-0.01 * t(0.95, 2) / sqrt(3) = +-0.0169, inside +-0.02 ...
    assert equivalence_claim("c", {0: -0.01, 1: 0.0, 2: 0.01}, 0.02).verdict == HOLDS
    # ... and straddling +-0.015
    assert equivalence_claim("c", {0: -0.01, 1: 0.0, 2: 0.01}, 0.015).verdict == INCONCLUSIVE
    # mean 0.5, the same spread: the interval [0.483, 0.517] lies wholly outside +-0.2
    assert equivalence_claim("c", {0: 0.49, 1: 0.5, 2: 0.51}, 0.2).verdict == CONTRADICTED


@pytest.mark.parametrize("values, bound, verdict", [
    ({0: 0.0, 1: 0.0, 2: 0.0}, 0.01, HOLDS),  # constant below the bound
    ({0: 0.01, 1: 0.01, 2: 0.01}, 0.01, CONTRADICTED),  # constant at the bound: not below it
    ({0: 0.05, 1: 0.06, 2: 0.07}, 0.01, CONTRADICTED),  # the 90 % interval's lower end above the bound
    ({0: 0.0, 1: 0.02, 2: -0.01}, 0.01, INCONCLUSIVE),
    ({0: 0.0}, 0.01, NOT_TESTED),
])
def test_a_bound_claim(values, bound, verdict):
    assert bound_claim("c", values, bound).verdict == verdict


@pytest.mark.parametrize("differences, expect, verdict, units, p", [
    ({0: -0.1, 1: -0.1, 2: -0.1}, "negative", HOLDS, 3, 0.0),  # constant, the claimed sign: p = 0
    ({0: -0.1, 1: -0.1, 2: -0.1}, "positive", CONTRADICTED, 3, 1.0),  # constant, the other sign: the opposite p = 0
    ({0: 0.0, 1: 0.0}, "positive", NOT_SHOWN, 2, 1.0),  # constant 0: neither direction
    ({0: -0.1}, "negative", NOT_SHOWN, 1, NAN),  # one seed: no test
    ({0: 0.1}, "negative", NOT_SHOWN, 1, NAN),
    ({}, "negative", NOT_TESTED, 0, NAN),
    ({0: NAN, 1: None}, "negative", NOT_TESTED, 0, NAN),  # no seed with a value
    # -0.10, -0.12, -0.08: mean -0.10, sd 0.02, t = -8.66 on 2 df, one-sided p = 0.0065; the NaN seed is no unit
    ({0: -0.10, 1: -0.12, 2: -0.08, 3: NAN}, "negative", HOLDS, 3, 0.0065),
    ({0: 0.10, 1: 0.12, 2: 0.08}, "negative", CONTRADICTED, 3, 0.9935),  # the same, the other way round
    # -0.1, +0.1, -0.3: mean -0.1, sd 0.2, t = -0.866, p = 0.239 (claimed), 0.761 (opposite): not shown
    ({0: -0.1, 1: 0.1, 2: -0.3}, "negative", NOT_SHOWN, 3, 0.239),
    ({0: -0.1, 1: 0.1, 2: -0.3}, "positive", NOT_SHOWN, 3, 0.761),
])
def test_a_paired_claim(differences, expect, verdict, units, p):
    claim = paired_claim("c", differences, expect)
    assert claim.verdict == verdict and claim.seeds == units
    if not math.isnan(p):
        assert claim.p_value == pytest.approx(p, abs=5e-4)


def test_the_printed_interval_is_the_90_percent_one_that_matches_the_test():
    """A set not shown has a 90 % interval that contains zero; a set whose one-sided p lies between 0.025
    and 0.05 holds while its 95 % interval would cross zero: the printed interval is the 90 % one, which
    excludes zero exactly when the one-sided test rejects."""
    d = {0: -0.30, 1: -0.10, 2: -0.08}  # mean -0.16, sd 0.1217: t = -2.277, one-sided p = 0.0753 on 2 df
    c = paired_claim("c", d, "negative")
    assert c.verdict == NOT_SHOWN and c.p_value == pytest.approx(0.0753, abs=5e-4) and c.ci[1] > 0
    d = {0: -0.20, 1: -0.12, 2: -0.08, 3: -0.02}  # mean -0.105, sd 0.0755, n 4: t = -2.78, p = 0.0344
    c = paired_claim("c", d, "negative")
    half95 = stats.t.ppf(0.975, 3) * np.std(list(d.values()), ddof=1) / 2
    assert c.verdict == HOLDS and 0.025 < c.p_value < 0.05 and c.mean + half95 > 0  # the 95 % interval would cross 0 ...
    assert c.ci[1] < 0  # ... the printed 90 % one does not
    half90 = stats.t.ppf(0.95, 3) * np.std(list(d.values()), ddof=1) / 2
    assert c.ci == pytest.approx((c.mean - half90, c.mean + half90))


def _power(d: float, n: int) -> float:
    """One-sided one-sample t-test at 0.05: P(T > t_crit) with T noncentral t (df n - 1, nc d sqrt(n))."""
    return float(stats.nct.sf(stats.t.ppf(0.95, n - 1), n - 1, d * math.sqrt(n)))


def test_a_not_shown_verdict_states_the_detectable_effect_and_the_units_needed():
    d = {0: -0.1, 1: 0.1, 2: -0.3}  # sd 0.2, d_z = -0.5
    c = paired_claim("c", d, "negative")
    lo, hi = 0.0, 20.0  # plain bisection on the power curve
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _power(mid, 3) < 0.8 else (lo, mid)
    assert c.mde == pytest.approx(hi * 0.2, rel=1e-4)
    need = next(n for n in range(2, 1000) if _power(0.5, n) >= 0.8)
    assert c.needed == need and 20 < need < 35  # about 27 seeds for d = 0.5
    assert f"would need {need} seeds" in c.detail


def test_a_coefficient_claim_by_hand():
    # estimate 0.3, se 0.1, normal reference: z = 3, one-sided p = 0.00135, 90 % interval 0.3 +- 0.16449
    c = coefficient_claim("slope > 0", 0.3, 0.1, "positive", units=10)
    assert c.verdict == HOLDS and c.p_value == pytest.approx(0.0013499, rel=1e-3)
    assert c.ci == pytest.approx((0.3 - 0.164485, 0.3 + 0.164485), rel=1e-5)
    assert coefficient_claim("slope > 0", -0.3, 0.1, "positive", units=10).verdict == CONTRADICTED
    weak = coefficient_claim("slope > 0", 0.1, 0.1, "positive", units=10)  # z = 1, p = 0.159
    assert weak.verdict == NOT_SHOWN
    assert weak.mde == pytest.approx((1.644854 + 0.841621) * 0.1, rel=1e-5)  # (z_0.95 + z_0.80) se
    assert weak.needed == math.ceil(10 * (0.2486475 / 0.1) ** 2)  # 62: the se shrinking as 1 / sqrt(units)
    # with 4 degrees of freedom the t reference: z = 3 gives p = 0.01997
    assert coefficient_claim("slope > 0", 0.3, 0.1, "positive", units=5, df=4).p_value == pytest.approx(0.019970, rel=1e-3)
    assert coefficient_claim("slope > 0", 0.3, float("nan"), "positive", units=5).verdict == NOT_TESTED


def test_a_correlation_claim_by_hand():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    y = [1.2, 1.9, 3.3, 3.8, 5.1, 6.4, 6.8, 8.3, 9.1, 9.7]
    assert correlation_claim("r > 0", x, y).verdict == HOLDS
    assert correlation_claim("r > 0", x, [-v for v in y]).verdict == CONTRADICTED
    flat = correlation_claim("r > 0", x, [1, -1, 1, -1, 1, -1, 1, -1, 1, -1.5])
    assert flat.verdict == NOT_SHOWN
    assert flat.mde == pytest.approx(math.tanh((1.644854 + 0.841621) / math.sqrt(7)), rel=1e-5)  # 0.735 at 10 runs
    assert correlation_claim("r > 0", x[:2], y[:2]).verdict == NOT_TESTED  # 2 runs
