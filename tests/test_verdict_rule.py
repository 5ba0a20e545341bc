"""The verdict rule of every kind of claim on a hand table of boundary cases: an interval touching an
equivalence margin, p at alpha, constant differences, one unit, a unit without a value. Each row is
fixed by hand from the rule as docs/ablations.md states it, not from the code under test; moving a
strict inequality to a non-strict one (or the reverse) changes a row."""
from __future__ import annotations

import math

import pytest

from infogap.ablations.kit.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_TESTED,
    bound_claim,
    effect_verdict,
    equivalence_claim,
    interval_claim,
    paired_claim,
)

NAN = float("nan")


@pytest.mark.parametrize("right, p, verdict", [
    (True, 0.0499, HOLDS),
    (True, 0.05, FAILS),  # p = alpha does not reject
    (True, 0.0501, FAILS),
    (False, 0.001, FAILS),  # the wrong sign never holds, whatever p
    (True, NAN, FAILS),
])
def test_an_effect_holds_only_with_the_claimed_sign_and_p_below_alpha(right, p, verdict):
    assert effect_verdict(right, p) == verdict


@pytest.mark.parametrize("ci, verdict", [
    ((-0.1999, 0.1999), HOLDS),  # inside (-0.2, +0.2)
    ((-0.2, 0.1), INCONCLUSIVE),  # touches the lower margin: not inside
    ((-0.1, 0.2), INCONCLUSIVE),  # touches the upper margin
    ((0.2, 0.5), FAILS),  # wholly outside, touching the margin from outside
    ((0.1999, 0.5), INCONCLUSIVE),  # straddles +0.2
    ((-0.5, -0.2), FAILS),
    ((-0.5, 0.5), INCONCLUSIVE),
])
def test_an_interval_claim_against_a_margin_of_0_2(ci, verdict):
    estimate = (ci[0] + ci[1]) / 2
    assert interval_claim("c", estimate, ci, 0.2, units=10).verdict == verdict


@pytest.mark.parametrize("values, verdict", [
    ({0: 0.1999, 1: 0.1999, 2: 0.1999}, HOLDS),  # constant inside the margin: no spread, |mean| < margin
    ({0: 0.2, 1: 0.2, 2: 0.2}, FAILS),  # constant at the margin: |mean| < margin is false
    ({0: -0.3, 1: -0.3, 2: -0.3}, FAILS),
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


@pytest.mark.parametrize("values, bound, verdict", [
    ({0: 0.0, 1: 0.0, 2: 0.0}, 0.01, HOLDS),  # constant below the bound
    ({0: 0.01, 1: 0.01, 2: 0.01}, 0.01, FAILS),  # constant at the bound: not below it
    ({0: 0.05, 1: 0.06, 2: 0.07}, 0.01, FAILS),  # the 90 % interval's lower end above the bound
    ({0: 0.0, 1: 0.02, 2: -0.01}, 0.01, INCONCLUSIVE),
    ({0: 0.0}, 0.01, NOT_TESTED),
])
def test_a_bound_claim(values, bound, verdict):
    assert bound_claim("c", values, bound).verdict == verdict


@pytest.mark.parametrize("differences, expect, verdict, units", [
    ({0: -0.1, 1: -0.1, 2: -0.1}, "negative", HOLDS, 3),  # constant, the claimed sign: p = 0
    ({0: -0.1, 1: -0.1, 2: -0.1}, "positive", FAILS, 3),
    ({0: -0.1}, "negative", "direction only (right)", 1),
    ({0: 0.1}, "negative", "direction only (wrong)", 1),
    ({}, "negative", NOT_TESTED, 0),
    ({0: NAN, 1: None}, "negative", NOT_TESTED, 0),  # no seed with a value
    # -0.10, -0.12, -0.08: mean -0.10, sd 0.02, t = -8.66 on 2 df, one-sided p = 0.0065; the NaN seed is no unit
    ({0: -0.10, 1: -0.12, 2: -0.08, 3: NAN}, "negative", HOLDS, 3),
    # -0.1, +0.1, -0.3: mean -0.1, sd 0.2, t = -0.866, p = 0.239
    ({0: -0.1, 1: 0.1, 2: -0.3}, "negative", FAILS, 3),
])
def test_a_paired_claim(differences, expect, verdict, units):
    claim = paired_claim("c", differences, expect)
    assert claim.verdict == verdict and claim.seeds == units
    if units >= 2 and not math.isinf(claim.effect_size):
        assert claim.p_value == pytest.approx({HOLDS: 0.0065, FAILS: 0.239}[verdict], abs=5e-4)
