"""Claim 4: modality gap and logit entropy are linked. From a balanced (k = 5) checkpoint, fine-tune on
k = 0 captions with a learnable or a frozen temperature (frozen at the checkpoint's value): entropy
rises, and the gap grows more with the frozen temperature."""
from infogap.ablations.analysis import curve_figure, history

CURVES = ["entropy_i2t", "rmg", "l2m", "temperature"]


def rows(run, record):
    h = history(run.dir)
    start = h[min(h)]
    row = dict(record["metrics"])
    row.update({f"{m}_start": start[m] for m in ("rmg", "l2m", "entropy_i2t", "moad_image")})
    row["rmg_growth"] = row["rmg"] - row["rmg_start"]
    row["entropy_growth"] = row["entropy_i2t"] - row["entropy_i2t_start"]
    return [row]


def claims(rows):
    by = {(r["seed"], r["temperature"]): r for r in rows}
    seeds = sorted({s for s, _ in by})
    out = []
    for mode in ("learnable", "frozen"):
        ok = all(by[(s, mode)]["entropy_growth"] > 0 for s in seeds if (s, mode) in by)
        out.append((f"fine-tuning on k=0 raises logit entropy ({mode} temperature)", ok,
                    "; ".join(f"seed {s}: {by[(s, mode)]['entropy_i2t_start']:.3f} -> {by[(s, mode)]['entropy_i2t']:.3f}" for s in seeds if (s, mode) in by)))
    both = [s for s in seeds if (s, "learnable") in by and (s, "frozen") in by]
    ok = all(by[(s, "frozen")]["rmg_growth"] > by[(s, "learnable")]["rmg_growth"] for s in both)
    out.append(("the gap grows more with a frozen temperature than with a learnable one", ok,
                "; ".join(f"seed {s}: RMG growth frozen {by[(s, 'frozen')]['rmg_growth']:+.3f} vs learnable {by[(s, 'learnable')]['rmg_growth']:+.3f}" for s in both)))
    return out


def figures(ablation, runs, results):
    finetune = [r for r in runs if r.stage == ablation.report_stage]
    return [curve_figure(finetune, results, "temperature_curves", CURVES, lambda r: f"{r.axes['temperature']} temperature")]
