"""Claim 3: only a few embedding dimensions carry the gap. Rank dimensions by
Delta_k = |mean image - mean text|_k; remove the top n (n = 0..max_removed), re-normalise, recompute."""
from dataclasses import dataclass

from infogap.ablations.core.rescore import rescore
from infogap.ablations.kit.claims import cite, paired_claim, per_seed
from infogap.ablations.kit.study import Study
from infogap.train.metrics import gap_dimensions, normalize


@dataclass(frozen=True)
class Settings:
    max_removed: int = 20  # rows for n = 0, 1, ..., max_removed removed dimensions
    claim_top: int = 10  # the claim: removing the top claim_top dimensions more than halves L2M


def _remove(n):
    def transform(x, y, classes):
        if n == 0:
            return x, y, classes
        keep = gap_dimensions(x, y).argsort(descending=True)[n:]
        mask = x.new_zeros(x.shape[1])
        mask[keep] = 1
        return normalize(x * mask), normalize(y * mask), {f: normalize(c * mask) for f, c in classes.items()}

    return transform


class GapDims(Study):
    Settings = Settings
    extra_axes = ("n",)

    def rows(self, run, record):
        return [{"n": n, **rescore(run.dir, _remove(n))} for n in range(self.settings.max_removed + 1)]

    def claims(self, rows, design):
        """Per k of the design: L2M after removing the top ``claim_top`` gap dimensions minus half of L2M
        before, < 0."""
        top = self.settings.claim_top
        out = []
        for k in design["k"]:
            before, after = per_seed(rows, "n", 0, {"k": k}), per_seed(rows, "n", top, {"k": k})
            seeds = sorted(set(before) & set(after))
            out += cite([paired_claim(f"removing the top {top} of the embedding dimensions more than halves L2M (k={k})",
                                      {s: after[s]["l2m"] - 0.5 * before[s]["l2m"] for s in seeds}, "negative",
                                      "; ".join(f"seed {s}: L2M {before[s]['l2m']:.3f} -> {after[s]['l2m']:.3f}" for s in seeds))],
                        "Schrodi et al. 2025, claim 3: a few embedding dimensions carry the gap; removing them collapses it")
        return out
