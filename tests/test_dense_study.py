"""The dense-probe ablation (Vasu et al. 2024): the data-efficiency interpolation, the claims on fabricated tables, and the ablation end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest

from infogap.ablations.kit.claims import HOLDS


def test_labels_to_match_interpolates_the_data_efficiency_curve_in_log_fraction():
    from infogap.ablations.dense.study import label_savings, labels_to_match

    curve = {0.01: 0.2, 0.1: 0.4, 1.0: 0.6}
    f, exact = labels_to_match(curve, 0.5)  # halfway from 0.4 to 0.6: halfway from log 0.1 to log 1
    assert exact and f == pytest.approx(10 ** -0.5)
    assert labels_to_match(curve, 0.1) == (0.01, False)  # reached at the smallest fraction: an upper bound
    assert np.isnan(labels_to_match(curve, 0.7)[0])  # never reached
    assert labels_to_match({0.01: 3.0, 0.1: 2.0, 1.0: 1.0}, 2.0, higher_better=False) == (pytest.approx(0.1), True)
    assert labels_to_match({0.01: 3.0, 0.1: 2.5, 1.0: 1.0}, 1.75, higher_better=False)[0] == pytest.approx(10 ** -0.5)

    rows = [{"encoder": "clip", "task": "object", "k": 0, "fraction": 1.0, "seed": s, "miou": 0.5, "mode": "finetune"} for s in (0, 1, 2)]
    rows += [{"encoder": "clip", "task": "object", "k": 5, "fraction": f, "seed": 0, "miou": m, "mode": "finetune"} for f, m in curve.items()]
    rows += [{"encoder": "clip", "task": "object", "k": 5, "fraction": f, "seed": 1, "miou": m + 0.4, "mode": "finetune"} for f, m in curve.items()]
    rows += [{"encoder": "clip", "task": "object", "k": 5, "fraction": f, "seed": 2, "miou": m - 0.2, "mode": "finetune"} for f, m in curve.items()]
    assert label_savings(rows, "object", 0, 5, (0.01, 0.1, 1.0), "finetune") == {0: "3.16x", 1: ">= 100x", 2: "never"}
    # the linear-probe rows are another curve: none here
    assert label_savings(rows, "object", 0, 5, (0.01, 0.1, 1.0), "linear") == {}


def test_dense_claims_hold_only_when_captions_improve_dense_features():
    """Per task and mode: k=max beats k=min, k=max beats the MAE at the same images seen ("mae", the
    headline) and the converged MAE ("mae_converged"), each against its own baseline; per task
    (fine-tuned): 10 % of the labels at k=max beat all of them at k=min."""
    from infogap.ablations.dense.study import Dense

    dense = Dense()
    tasks = dense.settings.tasks

    def rows(gain, mae_level=0.5, modes=("linear", "finetune"), matched_level=0.4):
        out = []
        for s in (0, 1, 2):
            for mode in modes:
                for k in (0, 5):
                    for fraction in dense.settings.fractions:
                        scale = {0.01: 0.6, 0.1: 0.9, 1.0: 1.0}[fraction]
                        for t in tasks:
                            seg = t in ("object", "colour", "edge")
                            out.append({"encoder": "clip", "k": k, "seed": s, "task": t, "fraction": fraction, "mode": mode,
                                        "miou": scale * (0.5 + gain * k / 5) + 0.002 * s if seg else math.nan,
                                        "rmse": math.nan if seg else (0.3 - 0.3 * gain * k / 5) / scale + 0.001 * s})
                for fraction in dense.settings.fractions:
                    for t in tasks:
                        seg = t in ("object", "colour", "edge")
                        out.append({"encoder": "mae_converged", "seed": s, "task": t, "fraction": fraction, "mode": mode,
                                    "miou": mae_level + 0.001 * s if seg else math.nan, "rmse": math.nan if seg else 0.3 + 0.001 * s})
                        out.append({"encoder": "mae", "seed": s, "task": t, "fraction": fraction, "mode": mode,
                                    "miou": matched_level - 0.001 * s if seg else math.nan, "rmse": math.nan if seg else 0.35 - 0.001 * s})
        return out

    good = dense.claims(rows(0.3), {"k": [0, 5]})
    assert len(good) == len(tasks) * (2 * 3 + 1), [c.claim for c in good]
    assert sum("same images seen (matched budget)" in c.claim for c in good) == len(tasks) * 2
    assert [c.verdict for c in good] == [HOLDS] * len(good), [c.line() for c in good]
    assert sum("fine-tuned" in c.claim or "finetune" in c.claim for c in good) >= len(tasks) * 3
    control = [c for c in good if c.role == "positive control"]
    assert [c.claim for c in control] == ["rmse at k=5 is below k=0 (encoder=clip, task=scale_depth, fraction=1.0, mode=linear)"]
    assert {c.role for c in good if "scale_depth" in c.claim and c not in control} == {"beyond the paper"}
    assert {c.role for c in good if "scale_depth" not in c.claim} == {"paper"} and all(c.source.startswith("Vasu et al. 2024") for c in good
                                                                                      if c.role == "paper")
    bad = dense.claims(rows(-0.2), {"k": [0, 5]})
    assert all(c.verdict == "contradicted" for c in bad), [c.line() for c in bad]
    # a converged MAE better than every CLIP: the "beats the MAE" claims fail, the k claims still hold
    strong = {c.claim: c.verdict for c in dense.claims(rows(0.3, mae_level=0.99), {"k": [0, 5]})}
    beats = [v for c, v in strong.items() if "masked autoencoder trained to its own convergence" in c and c.startswith(("object", "colour", "edge"))]
    assert beats and all(v == "contradicted" for v in beats)
    assert all(v == HOLDS for c, v in strong.items() if "matched budget" in c), "each claim reads its own baseline"
    matched = {c.claim: c.verdict for c in dense.claims(rows(0.3, matched_level=0.99), {"k": [0, 5]})}
    assert {v for c, v in matched.items() if "matched budget" in c and c.startswith(("object", "colour", "edge"))} == {"contradicted"}
    assert {v for c, v in matched.items() if "own convergence" in c} == {HOLDS}
    # linear probes only: no fine-tuned claims, the 10x claim falls back to the linear curves
    linear = dense.claims(rows(0.3, modes=("linear",)), {"k": [0, 5]})
    assert len(linear) == len(tasks) * 4 and not any("finetune" in c.claim for c in linear)


def test_clip_accuracy_curves_read_each_runs_history(tmp_path):
    """Whether the CLIP encoders converged: each finished run's zero-shot object accuracy per step, from its metrics history."""
    import json
    from types import SimpleNamespace

    from infogap.ablations.dense.study import clip_accuracy_curves

    runs = []
    for k, seed, accs in ((0, 0, {"0": 0.1, "300": 0.6, "600": 0.7}), (5, 1, {"0": 0.1, "600": 0.9})):
        d = tmp_path / f"k{k}s{seed}"
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({"history": {step: {"zeroshot_object_acc": a, "l2m": 1.0} for step, a in accs.items()}}))
        runs.append(SimpleNamespace(dir=d, axes={"k": k}, seed=seed))
    runs.append(SimpleNamespace(dir=tmp_path / "missing", axes={"k": 2}, seed=0))
    assert clip_accuracy_curves(runs) == {"k=0 seed=0": {0: 0.1, 300: 0.6, 600: 0.7}, "k=5 seed=1": {0: 0.1, 600: 0.9}}
