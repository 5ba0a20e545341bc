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

    rows = [{"encoder": "clip", "task": "object", "layout_words": False, "fraction": 1.0, "seed": s, "miou": 0.5, "mode": "finetune"} for s in (0, 1, 2)]
    for seed, shift in ((0, 0.0), (1, 0.4), (2, -0.2)):
        rows += [{"encoder": "clip", "task": "object", "layout_words": True, "fraction": f, "seed": seed, "miou": m + shift, "mode": "finetune"}
                 for f, m in curve.items()]
    savings = label_savings(rows, "object", {"layout_words": False}, {"layout_words": True}, (0.01, 0.1, 1.0), "finetune")
    assert savings == {0: "3.16x", 1: ">= 100x", 2: "never"}
    # the linear-probe rows are another curve: none here
    assert label_savings(rows, "object", {"layout_words": False}, {"layout_words": True}, (0.01, 0.1, 1.0), "linear") == {}


def _rows(tasks, fractions, gain=0.3, mae=None, modes=("linear", "finetune_conv"), control=0.3):
    """Fabricated rows of the layout design: per seed, layout words on and off, k 0 and 5, budgets 600 and
    1800; layout words add ``gain`` (mIoU up, RMSE down) and k = 5 adds half of it; ``mae``: {budget: the
    masked autoencoder's level} (default: below every CLIP); ``control``: what layout words do to the plane."""
    mae = mae or {600: 0.2, 1800: 0.25}
    out = []
    for s in (0, 1, 2):
        for mode in modes:
            for fraction in fractions:
                scale = {0.01: 0.6, 0.1: 0.9, 1.0: 1.0}[fraction]
                for t in tasks:
                    seg = t == "object"
                    for budget in (600, 1800):
                        for words in (False, True):
                            for k in (0, 5):
                                level = 0.4 + (control if t == "plane" else gain) * words + gain / 2 * k / 5 + 0.05 * (budget == 1800) + 0.003 * s
                                out.append({"encoder": "clip", "layout_words": words, "k": k, "max_steps": budget, "seed": s, "task": t,
                                            "fraction": fraction, "mode": mode, "miou": scale * level if seg else math.nan,
                                            "rmse": math.nan if seg else (1.5 - level) / scale})
                        level = mae[budget] + 0.001 * s
                        out.append({"encoder": "mae", "max_steps": budget, "seed": s, "task": t, "fraction": fraction, "mode": mode,
                                    "miou": scale * level if seg else math.nan, "rmse": math.nan if seg else (1.5 - level) / scale})
    return out


DESIGN = {"layout_words": [False, True], "k": [0, 5], "max_steps": [600, 1800]}


def test_dense_claims_test_layout_words_the_matched_mae_and_label_efficiency():
    """The paper's claims per target, budget and mode at k = 5: layout words beat none, the layout CLIP
    beats the masked autoencoder of its own budget; label efficiency at the largest budget; k beyond the
    paper; the plane's linear probe the control."""
    from infogap.ablations.dense.study import Dense

    dense = Dense()
    tasks, fractions = dense.settings.tasks, dense.settings.fractions
    assert tasks == ("object", "depth", "plane")
    good = dense.claims(_rows(tasks, fractions), DESIGN)
    assert len(good) == 2 * (2 * 2 * 2 + 1 + 1) + 1, [c.claim for c in good]
    assert [c.verdict for c in good] == [HOLDS] * len(good), [c.line() for c in good]
    control = [c for c in good if c.role == "positive control"]
    assert [c.claim for c in control] == ["rmse at layout_words=True is below layout_words=False (encoder=clip, task=plane, fraction=1.0, "
                                          "mode=linear, k=5, max_steps=1800)"]
    assert sum(c.role == "beyond the paper" for c in good) == 2 and all(c.claim.startswith(("miou at k=5", "rmse at k=5"))
                                                                        for c in good if c.role == "beyond the paper")
    assert all(c.source.startswith("Vasu et al. 2024") for c in good if c.role == "paper")
    assert sum("same images seen (600 steps" in c.claim for c in good) == sum("same images seen (1800 steps" in c.claim for c in good) == 4
    assert not any("task=plane" in c.claim for c in good if c.role != "positive control")
    # layout words that hurt: the layout and label claims are contradicted, the control too
    bad = {c.claim: c.verdict for c in dense.claims(_rows(tasks, fractions, gain=-0.2, control=-0.2), DESIGN)}
    assert {v for c, v in bad.items() if "layout_words=True" in c} == {"contradicted"}
    # each budget reads its own masked autoencoder: strong at 600 steps, weak at 1800
    matched = {c.claim: c.verdict for c in dense.claims(_rows(tasks, fractions, mae={600: 1.2, 1800: 0.1}), DESIGN)}
    assert {v for c, v in matched.items() if "(600 steps" in c} == {"contradicted"}
    assert {v for c, v in matched.items() if "(1800 steps" in c} == {HOLDS}
    # linear probes only: the label claim falls back to the linear curves, no fine-tuned claim
    linear = dense.claims(_rows(tasks, fractions, modes=("linear",)), DESIGN)
    assert len(linear) == 2 * (2 * 2 + 1 + 1) + 1 and not any("finetune" in c.claim for c in linear)


def test_a_design_without_layout_words_keeps_the_k_and_mae_claims():
    """The 28-px world (no layout_words axis, one budget): k and the MAE of the runs' budget."""
    from infogap.ablations.dense.study import Dense

    dense = Dense(Dense.Settings(tasks=("object", "depth")))
    rows = [r for r in _rows(("object", "depth"), dense.settings.fractions) if r.get("layout_words") in (None, True) and r["max_steps"] == 600]
    for r in rows:
        r.pop("layout_words", None)
        r.pop("max_steps")
    claims = dense.claims(rows, {"k": [0, 5]})
    assert len(claims) == 2 * (2 + 1 + 1) and {c.verdict for c in claims} == {HOLDS}, [c.line() for c in claims]
    assert sum("beats the masked autoencoder at the same images seen (the runs' budget" in c.claim for c in claims) == 4


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
    runs[0].axes = {"layout_words": True, "k": 0}
    assert list(clip_accuracy_curves(runs[:1])) == ["layout_words=True k=0 seed=0"]


def test_probe_rows_fine_tune_only_where_a_claim_reads_it(tmp_path):
    """Every task gets its linear probe at every fraction; the fine-tunes skip the positive control (its claim is
    the linear probe's), and only a CLIP's rows (label_curve) carry the 10 % fine-tune of the label-efficiency
    claim: a baseline is fine-tuned at 100 % alone."""
    import torch

    from infogap.ablations.dense.study import Settings, probe_rows
    from infogap.data.factors import Vocabulary
    from infogap.train.module import ContrastiveModule

    torch.manual_seed(0)
    module = ContrastiveModule("tiny-64p8", text_spec=Vocabulary(layout=True).text_spec())
    ckpt = tmp_path / "layout.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    settings = Settings(tasks=("object", "depth", "plane"), fractions=(0.5, 1.0), finetune_fractions=(0.25, 1.0), n_train=16, n_val=8,
                        probe_steps=1, finetune_steps=1)
    linear = {(t, "linear", f) for t in ("object", "depth", "plane") for f in (0.5, 1.0)}
    got = {(r["task"], r["mode"], r["fraction"]) for r in probe_rows(ckpt, 0, settings)}
    assert got == linear | {(t, "finetune_conv", f) for t in ("object", "depth") for f in (0.25, 1.0)}
    got = {(r["task"], r["mode"], r["fraction"]) for r in probe_rows(ckpt, 0, settings, label_curve=False)}
    assert got == linear | {(t, "finetune_conv", 1.0) for t in ("object", "depth")}
