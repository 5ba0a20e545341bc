"""Embedding association tests (EAT; Caliskan et al. 2017 for words, Ghate et al., NAACL 2025, for CLIP's
image and text embeddings; docs/results/bias.md): for target sets X, Y and
attribute sets A, B,

    s(w, A, B) = mean_{a in A} cos(w, a) - mean_{b in B} cos(w, b),
    d = [mean_{x in X} s(x, A, B) - mean_{y in Y} s(y, A, B)] / std_{w in X u Y} s(w, A, B)   (ddof = 1),

and a one-sided permutation p over the equal-size re-partitions of X u Y (statistic sum_{x in X'} s),
exact up to 1e6 partitions, else 1e6 random ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from infogap.train.metrics import as_tensor, normalize

EAT_PERMUTATIONS = 1_000_000  # exact enumeration up to this many partitions, else this many random ones
EAT_BATCH = 20_000  # partitions per vectorised batch


@dataclass
class EATResult:
    """An embedding association test: effect size d, one-sided permutation p-value, the number of
    partitions the p-value counts and whether they are all of them (exact) or random ones."""

    effect_size: float
    p_value: float
    permutations: int
    exact: bool

    def as_dict(self) -> dict:
        return {"effect_size": self.effect_size, "p_value": self.p_value, "permutations": self.permutations, "exact": self.exact}


def eat_association(w, a, b) -> torch.Tensor:
    """s(w, A, B) = mean_{a in A} cos(w, a) - mean_{b in B} cos(w, b), one value per row of ``w``.
    Rows are L2-normalised here; the means of cosines are dot products with the attribute means,
    <w, mean(A)> - <w, mean(B)>, so the cost is O((|W| + |A| + |B|) d)."""
    w, a, b = (normalize(as_tensor(t).double()) for t in (w, a, b))
    return w @ (a.mean(0) - b.mean(0))


def _eat_s(x, y, a, b) -> tuple[np.ndarray, int]:
    """s over X then Y, and |X|; a one-line error for an empty set."""
    for name, t in (("X", x), ("Y", y), ("A", a), ("B", b)):
        if len(t) == 0:
            raise ValueError(f"EAT: the set {name} is empty")
    return torch.cat([eat_association(x, a, b), eat_association(y, a, b)]).numpy(), len(x)


def eat_effect_size(x, y, a, b) -> float:
    """The EAT effect size
    d = [mean_{x in X} s(x, A, B) - mean_{y in Y} s(y, A, B)] / std_{w in X u Y} s(w, A, B)
    (sample standard deviation, ddof = 1). d > 0: X is closer to A (and Y to B) than the reverse; |d| >= 0.2
    counts as an effect. For |X| = |Y| = n, |d| <= 2 sqrt((2n - 1) / (2n)) < 2; with unequal sizes it can be
    larger (one target against many tied ones: |d| grows like the square root of the set size). NaN when s does not vary over X u Y (every target
    equally associated: d is 0 / 0)."""
    return _eat_d(*_eat_s(x, y, a, b))


def _eat_d(s: np.ndarray, nx: int) -> float:
    sd = float(s.std(ddof=1))
    if not sd > 1e-12 * max(1.0, float(np.abs(s).max())):
        return float("nan")
    return float((s[:nx].mean() - s[nx:].mean()) / sd)


def eat_test(x, y, a, b, permutations: int = EAT_PERMUTATIONS, seed: int = 0, exact_limit: int = EAT_PERMUTATIONS) -> EATResult:
    """Effect size (``eat_effect_size``) and one-sided permutation p-value of an embedding association test.

    The statistic of a partition (X', Y') of X u Y with |X'| = |X| is S(X') = sum_{x in X'} s(x, A, B), which
    orders partitions exactly as the difference of the two means does (also for |X| != |Y|). The
    p-value is the share of partitions with S(X') >= S(X) (ties count as >=, up to float rounding):
    - exact, over all C(|X| + |Y|, |X|) partitions, when there are at most ``exact_limit`` of them;
    - otherwise over ``permutations`` random partitions drawn from ``seed`` (uniform |X|-subsets),
      as (1 + #{S >= S(X)}) / (1 + permutations), so a sampled p is never 0.
    s is computed once; a batch of partitions is a 0/1 membership matrix (random ranks below their
    |X|-th smallest) times the vector s. Zero variance of s gives d = NaN and p = 1 (every partition
    ties). Each of X, Y, A, B needs at least one row, and X u Y at least three."""
    s, nx = _eat_s(x, y, a, b)
    n = len(s)
    if n < 3:
        raise ValueError(f"EAT: X and Y together need at least 3 targets for a standard deviation and a test, got {n}")
    if permutations < 1:
        raise ValueError(f"EAT: permutations must be positive, got {permutations}")
    d = _eat_d(s, nx)
    observed = float(s[:nx].sum())
    tol = 1e-9 * max(1.0, float(np.abs(s).sum()))  # the same sum in another order differs by rounding only
    total = math.comb(n, nx)
    count = 0
    if total <= exact_limit:
        import itertools

        combos = itertools.combinations(range(n), nx)
        done = 0
        while done < total:
            m = min(EAT_BATCH, total - done)
            idx = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, m)), dtype=np.int64, count=m * nx).reshape(m, nx)
            count += int((s[idx].sum(1) >= observed - tol).sum())
            done += m
        return EATResult(d, count / total, total, True)
    rng = np.random.default_rng(seed)
    done = 0
    while done < permutations:
        m = min(EAT_BATCH, permutations - done)
        ranks = rng.random((m, n))
        kth = np.partition(ranks, nx - 1, axis=1)[:, nx - 1: nx]
        stats = (ranks <= kth).astype(np.float64) @ s
        count += int((stats >= observed - tol).sum())
        done += m
    return EATResult(d, (1 + count) / (1 + permutations), permutations, False)
