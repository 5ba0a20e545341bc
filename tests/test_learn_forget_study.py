"""The learn/forget ablation (seed 003): OLS and within-model fits by hand, the claims, `infogap analyze learn-forget`, and the ablation end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from infogap.data.synthetic import SyntheticSource
from infogap.train.module import ContrastiveModule
from tests.helpers import read_csv, tiny_end_to_end


def test_ols_fit_against_polyfit_and_a_hand_r2():
    from infogap.ablations.learn_forget.study import ols_fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=20)
    y = 0.7 * x + 0.2 + rng.normal(scale=0.3, size=20)
    fit = ols_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    r2 = 1 - np.sum((y - (slope * x + intercept)) ** 2) / np.sum((y - y.mean()) ** 2)
    assert fit["slope"] == pytest.approx(slope) and fit["intercept"] == pytest.approx(intercept) and fit["r2"] == pytest.approx(r2)
    assert fit["ci"][0] < slope < fit["ci"][1] and fit["p_value"] < 1e-4 and fit["n"] == 20
    x[3] = np.nan  # a missing point is dropped
    assert ols_fit(x, y)["n"] == 19
    assert np.isnan(ols_fit(np.ones(5), np.arange(5.0))["slope"]) and np.isnan(ols_fit([1.0, 2.0], [1.0, 3.0])["r2"])


def test_within_model_fit_recovers_the_slope_inside_models_that_pooled_ols_reverses():
    from infogap.ablations.learn_forget.study import ols_fit, within_model_fit

    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(8), 6)
    centre = np.linspace(0, 1, 8)[groups]  # models further right sit lower: the pooled trend is negative
    x = centre + rng.uniform(-0.1, 0.1, size=48)
    y = 2.0 * (x - centre) - 3.0 * centre + rng.normal(scale=0.02, size=48)
    assert ols_fit(x, y)["slope"] < 0
    fit = within_model_fit(x, y, groups)
    assert fit["within_slope"] == pytest.approx(2.0, abs=0.2) and fit["within_ci"][0] < 2.0 < fit["within_ci"][1]
    assert fit["within_p"] < 1e-6 and fit["models"] == 8
    # the within estimator by hand: the slope of the per-model demeaned points
    xd = x - np.array([x[groups == g].mean() for g in groups])
    yd = y - np.array([y[groups == g].mean() for g in groups])
    assert fit["within_slope"] == pytest.approx(np.sum(xd * yd) / np.sum(xd * xd), rel=1e-9)
    assert np.isnan(within_model_fit(x, y, np.zeros(48))["within_slope"])  # one model: nothing to separate
    assert np.isnan(within_model_fit(centre, y, groups)["within_slope"])  # x constant inside every model


def test_claims_need_a_rising_fit_and_iimm_to_fit_at_all_before_it_predicts_better():
    from infogap.ablations.learn_forget.study import fit_claims

    rng = np.random.default_rng(1)
    iimm, acc = rng.uniform(0, 1, 40), rng.uniform(0, 1, 40)
    other = rng.uniform(0, 1, 40)
    rows = [{"method": "full", "zs_iimm": a, "zs_acc": b, "zs_rmg": c, "zs_l2m": c, "gain": 1.0 * a + 2.0 * b + 0.05 * e,
             "forgetting": -0.3 * a + 0.01 * e} for a, b, c, e in zip(iimm, acc, other, rng.normal(size=40))]
    verdict = {c.claim.split(" (")[0]: c.verdict for c in fit_claims(rows) if "(full;" in c.claim}
    assert verdict["gain rises with zero-shot IIMM"] == "holds"
    assert verdict["IIMM predicts gain better than zero-shot accuracy, RMG and L2M"] == "does NOT hold"  # the accuracy explains more
    assert verdict["forgetting rises with zero-shot IIMM"] == "does NOT hold"  # it falls
    assert verdict["IIMM predicts forgetting better than zero-shot accuracy, RMG and L2M"] == "holds"  # R² says nothing of the sign
    # IIMM has the highest R² of noise: residuals of random numbers on IIMM and the accuracy, plus a trace of IIMM
    alt = 0.3 + 1e-3 * (np.arange(40) % 2)
    design = np.column_stack([np.ones(40), iimm, alt])
    e = rng.normal(size=40)
    forgetting = e - design @ np.linalg.lstsq(design, e, rcond=None)[0] + 0.02 * (iimm - iimm.mean())
    noise = [{**r, "zs_rmg": 0.3, "zs_l2m": 0.3, "zs_acc": a, "forgetting": f} for r, a, f in zip(rows, alt, forgetting)]
    assert np.corrcoef(iimm, forgetting)[0, 1] ** 2 > np.corrcoef(alt, forgetting)[0, 1] ** 2
    c = next(c for c in fit_claims(noise) if c.claim.startswith("IIMM predicts forgetting") and "(full;" in c.claim)
    assert c.verdict == "does NOT hold" and "explains nothing" in c.detail


@pytest.mark.slow
def test_analyze_learn_forget_on_local_checkpoints_and_a_folder(tmp_path, capsys, encoder, image_folder):
    from infogap.cli import main as infogap
    from infogap.models import build_model

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"bpe{seed}.pt")
        torch.save(build_model("tiny-bpe").state_dict(), paths[-1])
    folder = image_folder(tmp_path / "shapes", {"circle": 4, "square": 4, "star": 4})
    out = tmp_path / "out"
    args = ["analyze", "learn-forget", "--model", f"tiny-bpe={paths[0]}", "--model", f"tiny-bpe={paths[1]}", "--folder", str(folder),
            "--templates", "a {}.|a photo of a {}.", "--steps", "2", "--seeds", "0", "--n-train", "64", "--n-eval", "64", "--out", str(out)]
    assert infogap(args) == 0
    printed = capsys.readouterr().out
    assert "rises with zero-shot IIMM" in printed
    import csv

    with open(out / "points.csv") as f:
        points = list(csv.DictReader(f))
    assert len(points) == 2 * 3 * 7  # models x methods x (6 factors + the folder)
    assert {p["task"] for p in points} == {"object", "colour", "thickness", "swelling", "fracture", "scaling", "shapes"}
    assert all(float(p["forgetting"]) == 0 for p in points if p["method"] == "linear")
    with open(out / "fits.csv") as f:
        assert len(list(csv.DictReader(f))) == 4 * 2 * 4
    assert (out / "learn_forget_vs_iimm.png").stat().st_size > 10_000
    saved = json.loads((out / "learn_forget.json").read_text())
    assert len(saved) == 2 and all(len(m["finetunes"]) == 3 * 7 for m in saved.values())
    word = tmp_path / "word.ckpt"
    module = ContrastiveModule("tiny", text_spec=SyntheticSource().vocab.text_spec())
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, word)
    for bad, message in ((["--checkpoint", str(word), "--folder", str(folder)], "word-level synthetic model cannot read"),
                         (["--model", "tiny-bpe"], "give NAME=PATH"), (["--model", f"tiny-bpe={paths[0]}", "--no-synthetic"], "leaves no task"),
                         (["--model", f"tiny-bpe={paths[0]}", "--methods", "lora"], "unknown method lora")):
        assert infogap(["analyze", "learn-forget", *bad, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_learn_forget_tiny_end_to_end(tmp_path, capsys):
    """3 methods x 6 tasks per run, each task's zero-shot measures and its gain and forgetting."""
    _, rows, results = tiny_end_to_end("learn_forget", tmp_path, capsys)
    report = (results / "report.md").read_text()
    assert len(rows) == 2 * 3 * 6 and {r["method"] for r in rows} == {"full", "linear", "bitfit"}
    assert "runs finished: 2 of 2 " in report
    assert all(float(r["forgetting"]) == 0 for r in rows if r["method"] == "linear"), "a frozen tower forgets nothing"
    assert all(r[k] != "" for r in rows for k in ("zs_iimm", "zs_s_inter", "zs_s_intra", "zs_acc", "zs_rmg", "gain"))
    fits = read_csv(results / "fits.csv")
    assert len(fits) == 4 * 2 * 4  # (3 methods + pooled) x 2 outcomes x 4 predictors
