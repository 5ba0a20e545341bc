"""Claim 3: only a few embedding dimensions carry the gap. Rank dimensions by
Delta_k = |mean image - mean text|_k; remove the top n (n = 0..20), re-normalise, recompute."""
from infogap.ablations.analysis import rescore
from infogap.train.metrics import normalize, gap_dimensions

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


def claims(rows):
    out = []
    for k in sorted({r["k"] for r in rows}):
        sel = {(r["seed"], r["n"]): r for r in rows if r["k"] == k}
        seeds = sorted({s for s, _ in sel})
        ok = all(sel[(s, 10)]["l2m"] < 0.5 * sel[(s, 0)]["l2m"] for s in seeds)
        detail = "; ".join(f"seed {s}: L2M {sel[(s, 0)]['l2m']:.3f} -> {sel[(s, 10)]['l2m']:.3f}" for s in seeds)
        out.append((f"removing the top 10 of the embedding dimensions more than halves L2M (k={k})", ok, detail))
    return out
