"""Claims and their statistics, for every study, and the helpers that pair rows by seed.

Three kinds of statement, each with its own rule (docs/ablations.md, "Running one": the three kinds of statement):

- an **effect** ("x falls from k = 0 to k = 5", ``paired_claim``, ``effect_verdict``) holds when the
  estimate has the claimed sign and the one-sided test rejects at alpha = 0.05;
- **no effect** ("d does not move with p", "no gain above 1 point", ``equivalence_claim``,
  ``bound_claim``, ``interval_claim``) states a margin and holds only when the 90 % interval lies inside
  it (TOST); an interval wholly outside does NOT hold; one that straddles the margin is
  **inconclusive**, never "holds", with the number of units the observed spread would need;
- a **sanity check** (``sanity_check``) holds for any data by construction (shifting one modality by
  the mean difference equalises the centroids); it is reported apart from the claims, as a check that
  the machinery ran, never as a finding.

Every claim names its unit (seeds, runs, models) and counts each unit once."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

ALPHA = 0.05
HOLDS, FAILS, NOT_TESTED, INCONCLUSIVE = "holds", "does NOT hold", "not tested", "inconclusive"
CHECK_OK, CHECK_FAILED = "check passed", "check FAILED"


def effect_verdict(right: bool, p: float) -> str:
    """The verdict of a claimed effect: **holds** when the estimate has the claimed sign (``right``) and
    the one-sided p is below ``ALPHA`` (0.05; p = 0.05 does not hold), else **does NOT hold**."""
    return HOLDS if right and p < ALPHA else FAILS


@dataclass
class Claim:
    """A claim checked over seeds, with its statistics (see ``paired_claim``)."""

    claim: str
    verdict: str
    detail: str
    seeds: int = 0  # the number of independent units the statistics count (seeds, runs, models: ``unit``)
    mean: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    p_value: float = float("nan")
    effect_size: float = float("nan")
    kind: str = "effect"  # effect, equivalence (a claim of no effect, with ``margin``) or sanity (holds by construction)
    margin: float = float("nan")
    unit: str = "seeds"

    def line(self) -> str:
        return f"{self.verdict}: {self.claim} ({self.detail})"


def mean_ci(values, confidence: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean and its two-sided ``confidence`` t-interval over seeds (``scipy.stats.t``: mean ± t_{n-1} ·
    sd / sqrt(n), sd with ddof 1); the interval is (nan, nan) for fewer than 2 values, NaNs dropped."""
    from scipy import stats

    v = np.array([x for x in values if x is not None and not (isinstance(x, float) and np.isnan(x))], dtype=float)
    if len(v) == 0:
        return float("nan"), (float("nan"), float("nan"))
    m = float(v.mean())
    if len(v) < 2:
        return m, (float("nan"), float("nan"))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, (m - half, m + half)


def paired_claim(claim: str, differences: dict[int, float], expect: str, detail: str = "") -> Claim:
    """The claim that a per-seed difference (e.g. metric at k = 5 minus metric at k = 0, same seed) is
    below zero (``expect="negative"``) or above it (``"positive"``).

    - no seed has both arms: **not tested** (a seed whose difference is NaN or None has no value: it
      is named and not counted);
    - one seed: **direction only (right/wrong)**: no test can use a single difference;
    - n >= 2 seeds: the mean difference with its 95 % t-interval (``mean_ci``), the one-sided paired
      t-test of the mean difference against 0 in the claimed direction
      (``scipy.stats.ttest_1samp(d, 0, alternative="less"|"greater")``, df = n - 1) and the effect size
      d_z = mean(d) / sd(d) (ddof 1). It **holds** when the mean has the claimed sign and p < 0.05.
      Identical differences on every seed (sd = 0 up to rounding) have p = 0 when their sign is the claimed one, else 1.
    """
    from scipy import stats

    if expect not in ("negative", "positive"):
        raise ValueError(f"expect must be 'negative' or 'positive', got {expect!r}")
    missing = [s for s in sorted(differences) if differences[s] is None or math.isnan(differences[s])]
    differences = {s: v for s, v in differences.items() if s not in missing}  # a seed without a value is no unit
    d = np.array([differences[s] for s in sorted(differences)], dtype=float)
    sign = -1.0 if expect == "negative" else 1.0
    per_seed_text = "; ".join([f"seed {s}: {differences[s]:+.3f}" for s in sorted(differences)] + [f"seed {s}: no value" for s in missing])
    text = "; ".join(t for t in (detail, f"difference per seed {per_seed_text}" if len(d) else "no seed has both arms") if t)
    if len(d) == 0:
        return Claim(claim, NOT_TESTED, text)
    mean, ci = mean_ci(d)
    right = mean * sign > 0
    if len(d) == 1:
        return Claim(claim, f"direction only ({'right' if right else 'wrong'})", text + "; 1 seed: no test", seeds=1, mean=mean)
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # equal up to rounding: no spread to test against
        p, effect = (0.0 if right else 1.0), math.copysign(math.inf, mean) if mean else math.nan
    else:
        p = float(stats.ttest_1samp(d, 0.0, alternative="less" if expect == "negative" else "greater").pvalue)
        effect = mean / sd
    verdict = effect_verdict(right, p)
    text += f"; mean {mean:+.3f}, 95 % t-interval [{ci[0]:+.3f}, {ci[1]:+.3f}], one-sided paired t-test p = {p:.3g}, d_z = {effect:+.2f}, {len(d)} seeds"
    return Claim(claim, verdict, text, seeds=len(d), mean=mean, ci=ci, p_value=p, effect_size=effect)


def compare(rows: list[dict], axis: str, lo, hi, metric: str, expect: str, where: Optional[dict] = None) -> Claim:
    """Claim: ``metric`` at ``axis = hi`` is below (``expect="negative"``) or above its value at
    ``axis = lo``, tested over the seeds that have both (``paired_claim``)."""
    a, b = per_seed(rows, axis, lo, where), per_seed(rows, axis, hi, where)
    word = "below" if expect == "negative" else "above"
    claim = f"{metric} at {axis}={hi} is {word} {axis}={lo}" + (f" ({', '.join(f'{k}={v}' for k, v in (where or {}).items())})" if where else "")
    seeds = sorted(set(a) & set(b))
    detail = "; ".join(f"seed {s}: {a[s][metric]:.3f} -> {b[s][metric]:.3f}" for s in seeds)
    return paired_claim(claim, {s: b[s][metric] - a[s][metric] for s in seeds}, expect, detail)


def per_seed(rows: list[dict], axis: str, value, where: Optional[dict] = None) -> dict[int, dict]:
    """{seed: row} of the rows at ``axis = value`` (and every ``where`` key = value)."""
    where = where or {}
    out: dict[int, dict] = {}
    for r in rows:
        if r.get(axis) == value and all(r.get(k) == v for k, v in where.items()):
            if r["seed"] in out:
                raise ValueError(f"two rows of seed {r['seed']} at {axis}={value}"
                                 + (f" ({', '.join(f'{k}={v}' for k, v in where.items())})" if where else "")
                                 + ": another axis varies too; pass its value in `where`")
            out[r["seed"]] = r
    return out


def other_points(design: dict[str, list], axis: str) -> list[dict]:
    """Every point of the design's axes other than ``axis`` ({} when there is none): the ``where`` of a
    claim made along ``axis`` at each of them (e.g. k = 0 vs 5 at each training length)."""
    import itertools

    names = [a for a in design if a != axis]
    return [dict(zip(names, combo)) for combo in itertools.product(*(design[a] for a in names))]


# --- claims of no effect: equivalence (TOST) ----------------------------------------------------------
def _units_needed(sd: float, distance: float, one_sided: bool = False) -> Optional[int]:
    """How many units make the 90 % t-interval's half-width at most ``distance`` for spread ``sd`` (the
    smallest n with t_{0.95, n-1} sd / sqrt(n) <= distance); None when no number does (distance <= 0)."""
    from scipy import stats

    if not distance > 0:
        return None
    if sd <= 0:
        return 2
    for n in range(2, 100_000):
        if stats.t.ppf(0.95, n - 1) * sd / math.sqrt(n) <= distance:
            return n
    return None


def _inconclusive(text: str, sd: float, mean: float, margin: float, unit: str) -> str:
    need = _units_needed(sd, margin - abs(mean))
    return text + (f"; the 90 % interval straddles the margin: about {need} {unit} at this spread would settle it" if need
                   else f"; the 90 % interval straddles the margin and the mean itself lies outside ±{margin:g}: more {unit} at this mean would not show equivalence")


def equivalence_claim(claim: str, values: dict, margin: float, detail: str = "", unit: str = "seeds") -> Claim:
    """The claim that a per-unit quantity (e.g. a difference between arms, per seed) is zero to within
    ``margin``: two one-sided t-tests against -margin and +margin (``statsmodels`` ``ttost_paired`` of the
    values against zeros), i.e. the 90 % t-interval of the mean lies inside (-margin, +margin).

    - **holds**: the 90 % interval lies inside the margin (TOST p < 0.05);
    - **does NOT hold**: the 90 % interval lies wholly outside it;
    - **inconclusive**: it straddles a bound (with the number of units the observed spread would need);
    - fewer than 2 units: not tested (one unit has no interval)."""
    from statsmodels.stats.weightstats import ttost_paired

    if not margin > 0:
        raise ValueError(f"an equivalence claim needs a positive margin, got {margin!r}")
    d = np.array([values[u] for u in sorted(values)], dtype=float)
    per_unit = "; ".join(f"{unit[:-1] if unit.endswith('s') else unit} {u}: {values[u]:+.4g}" for u in sorted(values))
    text = "; ".join(t for t in (detail, per_unit) if t) + f"; margin ±{margin:g}"
    if len(d) < 2:
        return Claim(claim, NOT_TESTED, text + f"; {len(d)} {unit}: an equivalence test needs 2", seeds=len(d), kind="equivalence",
                     margin=margin, unit=unit)
    mean, ci = mean_ci(d, 0.90)
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        p = 0.0 if abs(mean) < margin else 1.0
    else:
        p = float(ttost_paired(d, np.zeros_like(d), -margin, margin)[0])
    text += f"; mean {mean:+.4g}, 90 % t-interval [{ci[0]:+.4g}, {ci[1]:+.4g}], TOST p = {p:.3g}, {len(d)} {unit}"
    if p < ALPHA:
        verdict = HOLDS
    elif (not math.isnan(ci[0]) and ci[0] >= margin) or (not math.isnan(ci[1]) and ci[1] <= -margin) or sd <= 1e-12 * max(1.0, abs(mean)):
        verdict = FAILS
    else:
        verdict, text = INCONCLUSIVE, _inconclusive(text, sd, mean, margin, unit)
    return Claim(claim, verdict, text, seeds=len(d), mean=mean, ci=ci, p_value=p, kind="equivalence", margin=margin, unit=unit)


def bound_claim(claim: str, values: dict, bound: float, detail: str = "", unit: str = "seeds") -> Claim:
    """The claim that a per-unit quantity stays below ``bound`` ("no gain above 1 point"): one of the two
    TOST tests. **Holds** when the 90 % interval's upper end (the one-sided 95 % bound) is below
    ``bound``; **does NOT hold** when its lower end is above it; otherwise **inconclusive**."""
    from scipy import stats

    d = np.array([values[u] for u in sorted(values)], dtype=float)
    per_unit = "; ".join(f"{unit[:-1] if unit.endswith('s') else unit} {u}: {values[u]:+.4g}" for u in sorted(values))
    text = "; ".join(t for t in (detail, per_unit) if t) + f"; bound {bound:+g}"
    if len(d) < 2:
        return Claim(claim, NOT_TESTED, text + f"; {len(d)} {unit}: a bound needs 2", seeds=len(d), kind="equivalence", margin=bound, unit=unit)
    mean, ci = mean_ci(d, 0.90)
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        p = 0.0 if mean < bound else 1.0
    else:
        p = float(stats.ttest_1samp(d, bound, alternative="less").pvalue)
    text += f"; mean {mean:+.4g}, 90 % t-interval [{ci[0]:+.4g}, {ci[1]:+.4g}], one-sided p = {p:.3g} (below {bound:+g}), {len(d)} {unit}"
    if p < ALPHA:
        verdict = HOLDS
    elif ci[0] > bound or (sd <= 1e-12 * max(1.0, abs(mean))):
        verdict = FAILS
    else:
        need = _units_needed(sd, bound - mean)
        verdict = INCONCLUSIVE
        text += (f"; the 90 % interval straddles the bound: about {need} {unit} at this spread would settle it" if need
                 else f"; the mean itself lies above the bound: more {unit} at this mean would not show it below")
    return Claim(claim, verdict, text, seeds=len(d), mean=mean, ci=ci, p_value=p, kind="equivalence", margin=bound, unit=unit)


def interval_claim(claim: str, estimate: float, ci90: tuple[float, float], margin: float, detail: str = "", units: int = 0,
                   unit: str = "runs") -> Claim:
    """The claim that an estimate with a given 90 % interval (a regression coefficient) is zero to within
    ``margin``: holds when the interval lies inside (-margin, +margin), does NOT hold when it lies
    wholly outside, inconclusive otherwise (with how many units would narrow it enough, the interval's
    half-width scaling as 1 / sqrt(units))."""
    lo, hi = ci90
    text = (detail + "; " if detail else "") + f"estimate {estimate:+.4g}, 90 % interval [{lo:+.4g}, {hi:+.4g}], margin ±{margin:g}, {units} {unit}"
    if -margin < lo and hi < margin:
        verdict = HOLDS
    elif lo >= margin or hi <= -margin:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
        half, room = (hi - lo) / 2, margin - abs(estimate)
        if room > 0 and half > 0 and units:
            text += f"; the interval straddles the margin: about {math.ceil(units * (half / room) ** 2)} {unit} at this spread would settle it"
        else:
            text += "; the estimate itself lies outside the margin: more units at this estimate would not show equivalence"
    return Claim(claim, verdict, text, seeds=units, mean=estimate, ci=(lo, hi), kind="equivalence", margin=margin, unit=unit)


def sanity_check(check: str, passed: Optional[bool], detail: str = "") -> Claim:
    """A statement that holds for any data by construction: reported apart from the claims, as a check
    that the analysis ran as designed, never as a finding. ``passed=None``: there was nothing to check
    (no run at that point of the design): "not tested", never a failed check."""
    verdict = NOT_TESTED if passed is None else CHECK_OK if passed else CHECK_FAILED
    return Claim(check, verdict, detail or ("no data" if passed is None else ""), kind="sanity")

