"""Claim 1, second half: with full information the contrastive loss closes even a large initial gap.
A first stage trains with an extra loss that pushes the modality centroids apart (``model.gap_push``);
then k = 5 training starts either from that large-gap checkpoint or from a random initialisation."""
from infogap.ablations.kit.claims import CONTROL, cite, paired_claim, per_seed
from infogap.ablations.kit.results import curve_figure, run_start
from infogap.ablations.kit.study import Study

CURVES = ["rmg", "l2m", "zeroshot_object_acc"]


class InitGap(Study):
    def rows(self, run, record):
        start = run_start(run.dir)
        row = dict(record["metrics"])
        row.update({f"{m}_start": start[m] for m in ("rmg", "l2m")})
        return [row]

    def claims(self, rows, design):
        """The large-gap start is really large (its RMG minus twice a trained random-init model's, > 0), and
        k = 5 training closes more than half of it (RMG at the end minus half of RMG at the start, < 0)."""
        big, rnd = per_seed(rows, "init", "large_gap"), per_seed(rows, "init", "random")
        both = sorted(set(big) & set(rnd))
        return [
            *cite([paired_claim("the large-gap initialisation starts with a gap (RMG) over twice that of a trained random-init model",
                                {s: big[s]["rmg_start"] - 2 * rnd[s]["rmg"] for s in both}, "positive",
                                "; ".join(f"seed {s}: start {big[s]['rmg_start']:.3f} vs random-init end {rnd[s]['rmg']:.3f}" for s in both))],
                  "planted by construction: the first stage's loss pushes the modality centroids apart (model.gap_push)", CONTROL),
            *cite([paired_claim("full-information (k=5) training closes more than half of that initial gap",
                                {s: big[s]["rmg"] - 0.5 * big[s]["rmg_start"] for s in sorted(big)}, "negative",
                                "; ".join(f"seed {s}: RMG {big[s]['rmg_start']:.3f} -> {big[s]['rmg']:.3f}" for s in sorted(big)))],
                  "Schrodi et al. 2025, claim 1: with full information the contrastive loss closes even a large initial gap"),
        ]

    def figures(self, ablation, runs, results):
        train = [r for r in runs if r.stage == ablation.report_stage]
        return [curve_figure(train, results, "init_gap_curves", CURVES, lambda r: f"init={r.axes['init']}")]
