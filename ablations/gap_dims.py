"""Claim 3: only a few embedding dimensions carry the gap. Rank dimensions by
Delta_k = |mean image - mean text|_k; remove the top n (n = 0..20), re-normalise, recompute."""
from infogap.ablations.analysis import paired_claim, per_seed, rescore
from infogap.train.metrics import gap_dimensions, normalize

EXTRA_AXES = ["n"]
N_VALUES = list(range(21))


def _remove(n):
    def transform(x, y, classes):
        if n == 0:
            return x, y, classes
        keep = gap_dimensions(x, y).argsort(descending=True)[n:]
        mask = x.new_zeros(x.shape[1])
        mask[keep] = 1
        return normalize(x * mask), normalize(y * mask), {f: normalize(c * mask) for f, c in classes.items()}

    return transform


def rows(run, record):
    return [{"n": n, **rescore(run.dir, _remove(n))} for n in N_VALUES]


def claims(rows, design):
    """Per k of the design: L2M after removing the top 10 gap dimensions minus half of L2M before, < 0."""
    out = []
    for k in design["k"]:
        before, after = per_seed(rows, "n", 0, {"k": k}), per_seed(rows, "n", 10, {"k": k})
        seeds = sorted(set(before) & set(after))
        out.append(paired_claim(f"removing the top 10 of the embedding dimensions more than halves L2M (k={k})",
                                {s: after[s]["l2m"] - 0.5 * before[s]["l2m"] for s in seeds}, "negative",
                                "; ".join(f"seed {s}: L2M {before[s]['l2m']:.3f} -> {after[s]['l2m']:.3f}" for s in seeds)))
    return out
