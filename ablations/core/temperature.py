"""Claim 4: modality gap and logit entropy are linked. From a balanced (k = 5) checkpoint, fine-tune on
k = 0 captions with a learnable or a frozen temperature (frozen at the checkpoint's value): entropy
rises, and the gap grows more with the frozen temperature. The learnable logit scale has its own
learning rate (``model.logit_scale_lr``): with the weights' rate it moved 1 % in 400 steps, so the
two arms were the same run; the report shows how far it moved (``temperature_change``)."""
from infogap.ablations.kit.claims import cite, paired_claim, per_seed
from infogap.ablations.kit.results import curve_figure, run_start
from infogap.ablations.kit.study import Study

CURVES = ["entropy_i2t", "rmg", "l2m", "temperature"]
AXIS = "temperature_mode"  # not "temperature": that is the logged metric (1 / logit scale)


class Temperature(Study):
    def rows(self, run, record):
        start = run_start(run.dir)
        row = dict(record["metrics"])
        row.update({f"{m}_start": start[m] for m in ("rmg", "l2m", "entropy_i2t", "moad_image", "temperature")})
        row["temperature_change"] = row["temperature"] / row["temperature_start"] - 1  # relative: how far it moved
        row["rmg_growth"] = row["rmg"] - row["rmg_start"]
        row["entropy_growth"] = row["entropy_i2t"] - row["entropy_i2t_start"]
        return [row]

    def claims(self, rows, design):
        """The learnable temperature rises over the fine-tune (end minus start > 0: the model raises its
        entropy through the temperature); entropy at the end minus at the start, > 0, per temperature
        mode; and the RMG growth with a frozen temperature minus that with a learnable one, > 0, paired
        by seed."""
        by_mode = {mode: per_seed(rows, AXIS, mode) for mode in ("learnable", "frozen")}
        learn = by_mode["learnable"]
        out = [paired_claim("the learnable temperature rises during the fine-tune on k=0",
                            {s: r["temperature"] - r["temperature_start"] for s, r in learn.items()}, "positive",
                            "; ".join(f"seed {s}: {r['temperature_start']:.4f} -> {r['temperature']:.4f} ({r['temperature_change']:+.0%})"
                                      for s, r in learn.items()))]
        for mode, sel in by_mode.items():
            out.append(paired_claim(f"fine-tuning on k=0 raises logit entropy ({mode} temperature)",
                                    {s: r["entropy_growth"] for s, r in sel.items()}, "positive",
                                    "; ".join(f"seed {s}: {r['entropy_i2t_start']:.3f} -> {r['entropy_i2t']:.3f}" for s, r in sel.items())))
        frozen, learnable = by_mode["frozen"], by_mode["learnable"]
        both = sorted(set(frozen) & set(learnable))
        out.append(paired_claim("the gap grows more with a frozen temperature than with a learnable one",
                                {s: frozen[s]["rmg_growth"] - learnable[s]["rmg_growth"] for s in both}, "positive",
                                "; ".join(f"seed {s}: RMG growth frozen {frozen[s]['rmg_growth']:+.3f} vs learnable "
                                          f"{learnable[s]['rmg_growth']:+.3f}" for s in both)))
        return cite(out, "Schrodi et al. 2025, claim 4: fine-tuning on more imbalanced captions raises entropy; with a frozen "
                         "temperature the gap grows more")

    def figures(self, ablation, runs, results):
        finetune = [r for r in runs if r.stage == ablation.report_stage]
        return [curve_figure(finetune, results, "temperature_curves", CURVES, lambda r: f"{r.axes[AXIS]} temperature")]
