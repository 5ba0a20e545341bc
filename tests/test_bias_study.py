"""The co-occurrence ablation (seed 001): its fits and claims on hand-made effect sizes, and the ablation end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.helpers import tiny_end_to_end


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
    planted = got["planted associations: the effect size d rises with the co-occurrence rate p (mixed model slope > 0, p < 0.05)"]
    assert planted.verdict == "holds" and planted.mean == pytest.approx(1.5, abs=0.1) and planted.ci[0] < 1.5 < planted.ci[1]
    assert got["control tests (nothing planted): d does not move with p (mixed model slope p >= 0.05)"].verdict == "holds"
    assert got["model size does not change the planted effect sizes (coefficient of small vs tiny, p >= 0.05)"].verdict == "holds"
    assert got["at p = 0.9 the planted associations are effects (mean d over planted tests and modalities above 0.2)"].verdict == "holds"
    # OLS against numpy.polyfit (one size: the formula is d ~ p alone)
    tiny = [r for r in rows if r["model_size"] == "tiny"]
    fits = bias_study.slope_fits(tiny, bias.settings.planted)
    sel = [r for r in tiny if r["test"] in bias.settings.planted]
    slope, _ = np.polyfit([r["cooccurrence_p"] for r in sel], [r["effect_size"] for r in sel], 1)
    assert fits["ols"][0] == pytest.approx(slope, rel=1e-9) and math.isnan(fits["ols"][3])
    # a planted slope of 0 is found as none
    flat = {c.claim: c.verdict for c in bias.claims(_bias_rows(slope=0.0), design)}
    assert flat["planted associations: the effect size d rises with the co-occurrence rate p (mixed model slope > 0, p < 0.05)"] == "does NOT hold"
    # one seed: direction only or not tested, never holds; one rate: not tested
    one = bias.claims(_bias_rows(seeds=(0,)), design)
    assert all(not c.verdict.startswith("holds") for c in one) and one[0].verdict == "direction only (right)"
    single_p = [r for r in rows if r["cooccurrence_p"] == 0.9]
    assert bias.claims(single_p, design)[0].verdict == "not tested"


@pytest.mark.slow
def test_bias_tiny_end_to_end(tmp_path, capsys):
    """4 tests x 4 modality combinations per run, scored once and kept beside the run."""
    _, rows, results = tiny_end_to_end("bias", tmp_path, capsys)
    assert len(rows) == 2 * 16 and {r["modality"] for r in rows} == {"image-image", "text-text", "image-text", "text-image"}
    assert all(json.loads((run / "eat.json").read_text())["results"] for run in (results / "runs").iterdir())
    assert {p.name for p in results.glob("*.png")} == {"bias_effect_vs_p.png", "bias_effect_vs_accuracy.png"}
    assert all(json.loads((run / "eat.json").read_text())["key"]["permutations"] == 2000 for run in (results / "runs").iterdir())
