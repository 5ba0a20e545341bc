"""The co-occurrence ablation (Ghate et al. 2025): its fits and claims on hand-made effect sizes, and the ablation end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest



# --- the causal experiment's statistics -----------------------------------------------------------
def _bias_rows(seeds=(0, 1, 2), sizes=("tiny", "small"), slope=1.5):
    from infogap.ablations.bias.analyze import COMBINATIONS

    rng = np.random.default_rng(9)
    rows = []
    for seed in seeds:
        for size in sizes:
            for p in (0.0, 0.25, 0.5, 0.75, 0.9):
                run_noise, acc = rng.normal(0, 0.05), 0.5 + 0.1 * rng.random()
                for test in ("objects_colour", "objects_thickness", "control_objects_colour", "control_objects_scaling"):
                    planted = not test.startswith("control")
                    for combo in COMBINATIONS:
                        d = (slope * (p - 0.3) if planted else 0.0) + run_noise + rng.normal(0, 0.05)
                        rows.append({"model_size": size, "cooccurrence_p": p, "test": test, "modality": combo, "seed": seed,
                                     "effect_size": d, "p_value": 0.5, "zeroshot_mean_acc": acc})
    return rows


def test_bias_claims_on_hand_made_effect_sizes():
    from infogap.ablations.bias import study as bias_study

    bias = bias_study.Bias()

    design = {"model_size": ["tiny", "small"], "cooccurrence_p": [0.0, 0.25, 0.5, 0.75, 0.9]}
    rows = _bias_rows()
    got = {c.claim: c for c in bias.claims(rows, design)}
    planted = got["planted associations: the effect size d rises with the co-occurrence rate p (mixed model slope > 0)"]
    assert planted.verdict == "holds" and planted.mean == pytest.approx(1.5, abs=0.1) and planted.ci[0] < 1.5 < planted.ci[1]
    control = got["control tests (nothing planted): d does not move with p (mixed model slope within ±0.2 per unit p)"]
    assert control.verdict == "holds" and control.kind == "equivalence" and -0.2 < control.ci[0] < control.ci[1] < 0.2
    size = got["model size does not change the planted effect sizes (small - tiny within ±0.2)"]
    assert size.verdict == "holds" and size.unit == "runs" and size.seeds == 30  # 2 sizes x 5 rates x 3 seeds: the runs, not the 480 effect sizes
    control_claim = got["at p = 0.9 the planted associations are effects (mean d over planted tests and modalities above 0.2)"]
    assert control_claim.verdict == "holds" and control_claim.role == "positive control"
    assert bias.claims(rows, design)[0] == control_claim  # the control first
    assert got["control tests (nothing planted): d does not move with p (mixed model slope within ±0.2 per unit p)"].role == "beyond the paper"
    assert planted.source.startswith("Ghate et al. 2025") and planted.role == "paper"
    # OLS against numpy.polyfit (one size: the formula is d ~ p alone)
    tiny = [r for r in rows if r["model_size"] == "tiny"]
    fits = bias_study.slope_fits(tiny, bias.settings.planted)
    sel = [r for r in tiny if r["test"] in bias.settings.planted]
    slope, _ = np.polyfit([r["cooccurrence_p"] for r in sel], [r["effect_size"] for r in sel], 1)
    assert fits["ols"][0] == pytest.approx(slope, rel=1e-9) and math.isnan(fits["ols"][3])
    # a planted slope of 0 is found as none
    flat = {c.claim: c.verdict for c in bias.claims(_bias_rows(slope=0.0), design)}
    assert flat["planted associations: the effect size d rises with the co-occurrence rate p (mixed model slope > 0)"] == "not shown"
    assert not [c for c, v in flat.items() if v == "holds" and not c.startswith(("control", "model size"))]
    # the controls moving with p: their "no effect" is contradicted; two seeds with noisy runs: inconclusive, never "holds"
    moving = [dict(r, effect_size=r["effect_size"] + (0.8 * r["cooccurrence_p"] if r["test"].startswith("control") else 0)) for r in rows]
    assert {c.claim: c.verdict for c in bias.claims(moving, design)}[
        "control tests (nothing planted): d does not move with p (mixed model slope within ±0.2 per unit p)"] == "contradicted"
    def run_noise(r):  # one draw per training run (seed, size, p), shared by its 16 effect sizes
        return np.random.default_rng([r["seed"], int(r["cooccurrence_p"] * 100), r["model_size"] == "small"]).normal(0, 0.3)

    noisy = {c.claim: c for c in bias.claims([dict(r, effect_size=r["effect_size"] + run_noise(r)) for r in rows], design)}
    wide = noisy["control tests (nothing planted): d does not move with p (mixed model slope within ±0.2 per unit p)"]
    assert wide.verdict == "inconclusive" and wide.ci[0] < 0.2 < wide.ci[1], wide.detail
    # one seed: not shown or not tested, never holds; one rate: the slope is not tested
    one = bias.claims(_bias_rows(seeds=(0,)), design)
    assert all(c.verdict != "holds" for c in one) and [c.verdict for c in one[:2]] == ["not shown", "not shown"]
    single_p = [r for r in rows if r["cooccurrence_p"] == 0.9]
    assert bias.claims(single_p, design)[1].verdict == "not tested"


def test_the_bias_accuracy_correlation_counts_each_run_once():
    """Four modality combinations per run carry one accuracy: the correlation is over runs (each run's
    mean d), equal to scipy's Pearson r on those points, and its n is the number of runs."""
    from scipy import stats

    from infogap.ablations.bias.study import Bias, run_points

    rows = _bias_rows()
    for r in rows:  # accuracy that follows the planted effect a little, per run
        r["zeroshot_mean_acc"] = 0.5 + 0.05 * r["cooccurrence_p"] + 0.01 * r["seed"]
    points = run_points(rows, "objects_colour")
    assert len(points) == 30
    by_run = {}
    for r in rows:
        if r["test"] == "objects_colour":
            by_run.setdefault((r["model_size"], r["cooccurrence_p"], r["seed"]), []).append(r)
    d = [np.mean([r["effect_size"] for r in rs]) for rs in by_run.values()]
    acc = [rs[0]["zeroshot_mean_acc"] for rs in by_run.values()]
    want = stats.pearsonr(d, acc, alternative="greater")
    claim = next(c for c in Bias().claims(rows, {"model_size": ["tiny", "small"], "cooccurrence_p": [0.0, 0.9]}) if c.claim.startswith("objects_colour: d correlates"))
    assert claim.mean == pytest.approx(want.statistic, abs=1e-12) and claim.p_value == pytest.approx(want.pvalue, abs=1e-12)
    assert claim.seeds == 30 and claim.unit == "runs" and "30 runs" in claim.detail

