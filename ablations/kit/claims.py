"""Claims and their statistics, for every study, and the helpers that pair rows by seed.

Three kinds of statement, each with its own rule (docs/ablations.md, "Running one": the three kinds of
statement), and every interval printed beside a verdict is the two-sided 90 % interval, the one that
matches its one-sided tests at alpha = 0.05:

- an **effect** ("x falls from k = 0 to k = 5": ``paired_claim``, ``coefficient_claim``,
  ``correlation_claim``; the rule is ``effect_verdict``) **holds** when the one-sided test in the claimed
  direction rejects, is **contradicted** when the one-sided test in the opposite direction rejects, and
  is otherwise **not shown**: then it states the smallest effect the design could detect at 80 % power
  for the observed spread (``mde``) and how many units the observed effect would need (``needed``);
- **no effect** ("d does not move with p", "no gain above 1 point": ``equivalence_claim``,
  ``bound_claim``, ``interval_claim``) states a margin and **holds** only when the 90 % interval lies
  inside it (TOST); it is **contradicted** when the interval lies wholly outside, and **inconclusive**
  when it straddles the margin, with the number of units the observed spread would need;
- a **sanity check** (``sanity_check``) holds for any data by construction (shifting one modality by
  the mean difference equalises the centroids); it is reported apart from the claims, as a check that
  the machinery ran, never as a finding.

A claim with no data (no seed has both arms, no run at that point) is **not tested**. Each claim names
the paper's statement it tests (``source``) and its ``role``: the paper's own claim, a claim **beyond
the paper** (counted apart), or the study's **positive control** (an effect planted at a known size, run
through the same code; when it does not hold, the runner reports the study's other claims as **not
testable here**). Every claim names its unit (seeds, runs, models) and counts each unit once."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

ALPHA = 0.05
POWER = 0.8  # the power at which a "not shown" verdict states the smallest detectable effect
HOLDS, CONTRADICTED, NOT_SHOWN, INCONCLUSIVE, NOT_TESTED = "holds", "contradicted", "not shown", "inconclusive", "not tested"
NOT_TESTABLE = "not testable here"  # a claim of a study whose positive control did not hold (counted with not tested)
VERDICTS = (HOLDS, CONTRADICTED, NOT_SHOWN, INCONCLUSIVE, NOT_TESTED)
CHECK_OK, CHECK_FAILED = "check passed", "check FAILED"
PAPER, BEYOND, CONTROL = "paper", "beyond the paper", "positive control"  # a claim's role


def effect_verdict(p_claimed: float, p_opposite: float) -> str:
    """The verdict of a claimed effect from its two one-sided p-values: **holds** when the test in the
    claimed direction rejects (p < ``ALPHA`` = 0.05; p = 0.05 does not), **contradicted** when the test in
    the opposite direction rejects, else **not shown** (a NaN p rejects nothing)."""
    if p_claimed < ALPHA:
        return HOLDS
    if p_opposite < ALPHA:
        return CONTRADICTED
    return NOT_SHOWN


@dataclass
class Claim:
    """A claim checked over units, with its statistics (see ``paired_claim``)."""

    claim: str
    verdict: str
    detail: str
    seeds: int = 0  # the number of independent units the statistics count (seeds, runs, models: ``unit``)
    mean: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))  # the two-sided 90 % interval (effects and equivalences alike)
    p_value: float = float("nan")  # the one-sided p in the claimed direction (TOST p for an equivalence)
    effect_size: float = float("nan")
    kind: str = "effect"  # effect, equivalence (a claim of no effect, with ``margin``) or sanity (holds by construction)
    margin: float = float("nan")
    unit: str = "seeds"
    mde: float = float("nan")  # effects: the smallest |effect| the design detects at 80 % power, in the estimate's units
    needed: Optional[int] = None  # effects: the units the observed effect would need for 80 % power
    source: str = ""  # the paper's statement the claim tests ("Schrodi et al. 2025, claim 1: ...")
    role: str = PAPER  # PAPER, BEYOND (beyond the paper) or CONTROL (the study's positive control)

    def line(self) -> str:
        return f"{self.verdict}: {self.claim} ({self.detail})"


def cite(claims: Iterable[Claim], source: str, role: str = PAPER) -> list[Claim]:
    """The claims with the paper's statement they test and their role (``PAPER``, ``BEYOND``, ``CONTROL``)."""
    if role not in (PAPER, BEYOND, CONTROL):
        raise ValueError(f"role must be {PAPER!r}, {BEYOND!r} or {CONTROL!r}, got {role!r}")
    return [dataclasses.replace(c, source=source, role=role) for c in claims]


def mean_ci(values, confidence: float = 0.90) -> tuple[float, tuple[float, float]]:
    """Mean and its two-sided ``confidence`` t-interval over units (``scipy.stats.t``: mean ± t_{n-1} ·
    sd / sqrt(n), sd with ddof 1; 90 % by default, the interval that matches a one-sided test at 0.05);
    the interval is (nan, nan) for fewer than 2 values, NaNs dropped."""
    from scipy import stats

    v = np.array([x for x in values if x is not None and not (isinstance(x, float) and np.isnan(x))], dtype=float)
    if len(v) == 0:
        return float("nan"), (float("nan"), float("nan"))
    m = float(v.mean())
    if len(v) < 2:
        return m, (float("nan"), float("nan"))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, (m - half, m + half)


def t_power_design(n: int, d_observed: float) -> tuple[float, Optional[int]]:
    """For a one-sided one-sample (paired) t-test at alpha 0.05 on ``n`` units: the smallest standardised
    effect |d| it detects with 80 % power, and the number of units (>= 2) the effect ``d_observed`` would
    need for 80 % power (None when it is 0 or NaN, or needs more than 100,000). ``statsmodels``
    ``TTestPower`` (the noncentral t)."""
    from scipy import stats
    from statsmodels.stats.power import TTestPower

    power = TTestPower()
    d_min = float(power.solve_power(nobs=n, alpha=ALPHA, power=POWER, alternative="larger"))
    d = abs(d_observed)
    if not d > 0 or math.isinf(d):
        return d_min, (2 if math.isinf(d) else None)
    # the t-test needs at least the normal approximation's n: search from there (a window, vectorised)
    start = max(2, int(((stats.norm.ppf(1 - ALPHA) + stats.norm.ppf(POWER)) / d) ** 2))
    if start > 100_000:
        return d_min, None
    ns = np.arange(start, min(100_000, 2 * start + 20) + 1)
    reach = np.nonzero(power.power(effect_size=d, nobs=ns, alpha=ALPHA, alternative="larger") >= POWER)[0]
    return d_min, (int(ns[reach[0]]) if len(reach) else None)


def power_text(mde: float, needed: Optional[int], unit: str, observed: str) -> str:
    """What a "not shown" verdict adds to its detail: the smallest |effect| the design detects at 80 %
    power and the units the observed effect would need."""
    need = f"would need {needed} {unit}" if needed else "is too small for any feasible number of units"
    return f"; not shown: this design detects |effect| >= {mde:.3g} at 80 % power; the observed {observed} {need}"


def paired_claim(claim: str, differences: dict[int, float], expect: str, detail: str = "") -> Claim:
    """The claim that a per-seed difference (e.g. metric at k = 5 minus metric at k = 0, same seed) is
    below zero (``expect="negative"``) or above it (``"positive"``).

    - no seed has both arms: **not tested** (a seed whose difference is NaN or None has no value: it
      is named and not counted);
    - one seed: **not shown** (no test can use a single difference), with the direction it points;
    - n >= 2 seeds: the mean difference with its 90 % t-interval (``mean_ci``), both one-sided paired
      t-tests of the mean difference against 0 (``scipy.stats.ttest_1samp(d, 0, alternative="less"|"greater")``,
      df = n - 1; the verdict by ``effect_verdict``) and the effect size d_z = mean(d) / sd(d) (ddof 1).
      Not shown: the smallest mean difference detectable at 80 % power is d_min · sd (``t_power_design``),
      and the observed d_z's seeds for 80 % power are named.
      Identical differences on every seed (sd = 0 up to rounding) have p = 0 in the direction of their
      sign and 1 in the other (both 1 when they are all 0).
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
    if len(d) == 1:
        way = "the claimed" if mean * sign > 0 else "the opposite" if mean * sign < 0 else "no"
        return Claim(claim, NOT_SHOWN, text + f"; 1 seed, pointing {way} way: no test", seeds=1, mean=mean)
    sd = float(d.std(ddof=1))
    claimed, opposite = ("less", "greater") if expect == "negative" else ("greater", "less")
    if sd <= 1e-12 * max(1.0, abs(mean)):  # equal up to rounding: no spread to test against
        p = 0.0 if mean * sign > 0 else 1.0
        p_opp = 0.0 if mean * sign < 0 else 1.0
        effect, mde, needed = (math.copysign(math.inf, mean) if mean else math.nan), 0.0, 2
    else:
        p = float(stats.ttest_1samp(d, 0.0, alternative=claimed).pvalue)
        p_opp = float(stats.ttest_1samp(d, 0.0, alternative=opposite).pvalue)
        effect = mean / sd
        d_min, needed = t_power_design(len(d), effect)
        mde = d_min * sd
    verdict = effect_verdict(p, p_opp)
    text += (f"; mean {mean:+.3f}, 90 % t-interval [{ci[0]:+.3f}, {ci[1]:+.3f}], one-sided paired t-test p = {p:.3g} "
             f"(opposite direction {p_opp:.3g}), d_z = {effect:+.2f}, {len(d)} seeds")
    if verdict == NOT_SHOWN:
        text += power_text(mde, needed, "seeds", f"d_z = {effect:+.2f}")
    return Claim(claim, verdict, text, seeds=len(d), mean=mean, ci=ci, p_value=p, effect_size=effect, mde=mde, needed=needed)


def coefficient_claim(claim: str, estimate: float, se: float, expect: str, units: int, unit: str = "runs",
                      df: Optional[float] = None, detail: str = "") -> Claim:
    """The claim that a fitted coefficient (a slope of a regression or a mixed model) is below zero
    (``expect="negative"``) or above it (``"positive"``), from its estimate and standard error: the Wald
    statistic z = estimate / se against the t distribution with ``df`` degrees of freedom (the normal when
    ``df`` is None), both one-sided p-values (verdict by ``effect_verdict``) and the 90 % interval
    estimate ± q_0.95 · se. Not shown: the smallest detectable |coefficient| is (q_0.95 + q_0.80) · se,
    and the observed estimate would need about units · (that / |estimate|)² units (the standard error
    shrinking as 1 / sqrt(units))."""
    from scipy import stats

    if expect not in ("negative", "positive"):
        raise ValueError(f"expect must be 'negative' or 'positive', got {expect!r}")
    if not (se > 0 and math.isfinite(estimate)):
        return Claim(claim, NOT_TESTED, (detail + "; " if detail else "") + "no standard error: the fit did not converge", seeds=units, unit=unit)
    ref = stats.norm if df is None else stats.t(df)
    z = estimate / se * (-1.0 if expect == "negative" else 1.0)
    p, p_opp = float(ref.sf(z)), float(ref.cdf(z))
    q95 = float(ref.ppf(0.95))
    ci = (estimate - q95 * se, estimate + q95 * se)
    mde = (q95 + float(ref.ppf(POWER))) * se
    needed = math.ceil(units * (mde / abs(estimate)) ** 2) if estimate else None
    verdict = effect_verdict(p, p_opp)
    text = ((detail + "; " if detail else "") + f"estimate {estimate:+.4g} (se {se:.3g}), 90 % interval [{ci[0]:+.4g}, {ci[1]:+.4g}], "
            f"one-sided p = {p:.3g} (opposite direction {p_opp:.3g}), {units} {unit}")
    if verdict == NOT_SHOWN:
        text += power_text(mde, needed, unit, f"estimate {estimate:+.3g}")
    return Claim(claim, verdict, text, seeds=units, mean=estimate, ci=ci, p_value=p, mde=mde, needed=needed, unit=unit)


def correlation_claim(claim: str, x, y, expect: str = "positive", unit: str = "runs", detail: str = "") -> Claim:
    """The claim that Pearson's r between paired per-unit values is above zero (``expect="positive"``) or
    below it: both one-sided tests (``scipy.stats.pearsonr(x, y, alternative=...)``), the 90 % Fisher-z
    interval (``confidence_interval(0.90)``). Not shown: the smallest detectable |r| at 80 % power is
    tanh((z_0.95 + z_0.80) / sqrt(n - 3)), and the observed r would need ((z_0.95 + z_0.80) / atanh|r|)² + 3
    units. Fewer than 3 units, or no spread in one of them: not tested."""
    from scipy import stats

    if expect not in ("negative", "positive"):
        raise ValueError(f"expect must be 'negative' or 'positive', got {expect!r}")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Claim(claim, NOT_TESTED, (detail + "; " if detail else "") + f"{n} {unit}; Pearson r needs 3 with spread", seeds=n, unit=unit)
    claimed, opposite = ("greater", "less") if expect == "positive" else ("less", "greater")
    res = stats.pearsonr(x, y, alternative=claimed)
    r, p = float(res.statistic), float(res.pvalue)
    p_opp = float(stats.pearsonr(x, y, alternative=opposite).pvalue)
    ci = tuple(float(v) for v in stats.pearsonr(x, y).confidence_interval(0.90)) if n > 3 else (float("nan"), float("nan"))
    zsum = float(stats.norm.ppf(0.95) + stats.norm.ppf(POWER))
    mde = math.tanh(zsum / math.sqrt(n - 3)) if n > 3 else float("nan")
    needed = math.ceil((zsum / math.atanh(min(abs(r), 1 - 1e-12))) ** 2 + 3) if r else None
    verdict = effect_verdict(p, p_opp)
    text = ((detail + "; " if detail else "") + f"r = {r:+.3f}, 90 % interval [{ci[0]:+.3f}, {ci[1]:+.3f}], one-sided p = {p:.3g} "
            f"(opposite direction {p_opp:.3g}), {n} {unit}")
    if verdict == NOT_SHOWN:
        text += power_text(mde, needed, unit, f"r = {r:+.3f}")
    return Claim(claim, verdict, text, seeds=n, mean=r, ci=ci, p_value=p, effect_size=r, mde=mde, needed=needed, unit=unit)


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
def _units_needed(sd: float, distance: float) -> Optional[int]:
    """How many units make the 90 % t-interval's half-width at most ``distance`` for spread ``sd`` (the
    smallest n with t_{0.95, n-1} sd / sqrt(n) <= distance, searched over n < 100,000 at once); None when
    no number does (distance <= 0, or more than that)."""
    from scipy import stats

    if not distance > 0:
        return None
    if sd <= 0:
        return 2
    ns = np.arange(2, 100_000)
    reach = np.nonzero(stats.t.ppf(0.95, ns - 1) * sd / np.sqrt(ns) <= distance)[0]
    return int(ns[reach[0]]) if len(reach) else None


def _inconclusive(text: str, sd: float, mean: float, margin: float, unit: str) -> str:
    need = _units_needed(sd, margin - abs(mean))
    return text + (f"; the 90 % interval straddles the margin: about {need} {unit} at this spread would settle it" if need
                   else f"; the 90 % interval straddles the margin and the mean itself lies outside ±{margin:g}: more {unit} at this mean would not show equivalence")


def equivalence_claim(claim: str, values: dict, margin: float, detail: str = "", unit: str = "seeds") -> Claim:
    """The claim that a per-unit quantity (e.g. a difference between arms, per seed) is zero to within
    ``margin``: two one-sided t-tests against -margin and +margin (``statsmodels`` ``ttost_paired`` of the
    values against zeros), i.e. the 90 % t-interval of the mean lies inside (-margin, +margin).

    - **holds**: the 90 % interval lies inside the margin (TOST p < 0.05);
    - **contradicted**: the 90 % interval lies wholly outside it;
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
        verdict = CONTRADICTED
    else:
        verdict, text = INCONCLUSIVE, _inconclusive(text, sd, mean, margin, unit)
    return Claim(claim, verdict, text, seeds=len(d), mean=mean, ci=ci, p_value=p, kind="equivalence", margin=margin, unit=unit)


def bound_claim(claim: str, values: dict, bound: float, detail: str = "", unit: str = "seeds") -> Claim:
    """The claim that a per-unit quantity stays below ``bound`` ("no gain above 1 point"): one of the two
    TOST tests. **Holds** when the 90 % interval's upper end (the one-sided 95 % bound) is below
    ``bound``; **contradicted** when its lower end is above it; otherwise **inconclusive**."""
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
        verdict = CONTRADICTED
    else:
        need = _units_needed(sd, bound - mean)
        verdict = INCONCLUSIVE
        text += (f"; the 90 % interval straddles the bound: about {need} {unit} at this spread would settle it" if need
                 else f"; the mean itself lies above the bound: more {unit} at this mean would not show it below")
    return Claim(claim, verdict, text, seeds=len(d), mean=mean, ci=ci, p_value=p, kind="equivalence", margin=bound, unit=unit)


def interval_claim(claim: str, estimate: float, ci90: tuple[float, float], margin: float, detail: str = "", units: int = 0,
                   unit: str = "runs") -> Claim:
    """The claim that an estimate with a given 90 % interval (a regression coefficient) is zero to within
    ``margin``: holds when the interval lies inside (-margin, +margin), is contradicted when it lies
    wholly outside, inconclusive otherwise (with how many units would narrow it enough, the interval's
    half-width scaling as 1 / sqrt(units))."""
    lo, hi = ci90
    text = (detail + "; " if detail else "") + f"estimate {estimate:+.4g}, 90 % interval [{lo:+.4g}, {hi:+.4g}], margin ±{margin:g}, {units} {unit}"
    if -margin < lo and hi < margin:
        verdict = HOLDS
    elif lo >= margin or hi <= -margin:
        verdict = CONTRADICTED
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



def apply_controls(claims: list[Claim], controls: Optional[list[Claim]] = None) -> list[Claim]:
    """The claims with their positive controls first; when any control (``controls``, default: the
    claims' own) did not hold, every other claim is **not testable here**: a study that cannot detect an
    effect planted at a known size cannot show, contradict or fail to show one (its own verdict stays in
    the detail). Sanity checks, and claims with no data ("not tested"), keep their verdicts."""
    own = [c for c in claims if c.role == CONTROL]
    controls = own if controls is None else controls
    rest = [c for c in claims if c.role != CONTROL]
    if controls and any(c.verdict != HOLDS for c in controls):
        failed = ", ".join(dict.fromkeys(c.verdict for c in controls if c.verdict != HOLDS))
        rest = [c if c.kind == "sanity" or c.verdict == NOT_TESTED else
                dataclasses.replace(c, verdict=NOT_TESTABLE, detail=f"the positive control did not hold ({failed}); verdict otherwise: {c.verdict}; {c.detail}")
                for c in rest]
    return own + rest
