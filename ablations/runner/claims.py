"""Claims and their statistics, for every study: a claim checked over seeds (``paired_claim``: the
mean difference, its 95 % t-interval, a one-sided paired t-test and d_z), its verdict, and the helpers
that pair rows by seed."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

ALPHA = 0.05
HOLDS, FAILS, NOT_TESTED = "holds", "does NOT hold", "not tested"


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
    seeds: int = 0
    mean: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    p_value: float = float("nan")
    effect_size: float = float("nan")

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

    - no seed has both arms: **not tested**;
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
    d = np.array([differences[s] for s in sorted(differences)], dtype=float)
    sign = -1.0 if expect == "negative" else 1.0
    per_seed_text = "; ".join(f"seed {s}: {differences[s]:+.3f}" for s in sorted(differences))
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
