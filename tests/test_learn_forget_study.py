"""The learn/forget ablation (Niss et al. 2024): OLS and within-model fits by hand, the claims, `infogap analyze learn-forget`, and the ablation end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from infogap.data.synthetic import SyntheticSource
from infogap.train.module import ContrastiveModule


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
    assert np.isnan(within_model_fit(x, -3.0 * centre, groups)["within_p"])  # y constant inside every model: no p of float noise
    two = ols_fit(x[groups < 2], y[groups < 2], groups[groups < 2])  # 2 models: a slope, no clustered interval
    assert two["slope"] == pytest.approx(ols_fit(x[groups < 2], y[groups < 2])["slope"]) and two["clusters"] == 2
    assert np.isnan(two["p_value"]) and np.isnan(two["ci"][0])
    assert not np.isnan(ols_fit(x[groups < 3], y[groups < 3], groups[groups < 3])["p_value"])  # 3 models: tested


def test_fit_claims_hold_are_contradicted_or_are_not_shown():
    from infogap.ablations.learn_forget.study import fit_claims

    rng = np.random.default_rng(1)
    iimm, acc = rng.uniform(0, 1, 40), rng.uniform(0, 1, 40)
    other = rng.uniform(0, 1, 40)
    model = np.arange(40) // 4  # 10 models of 4 tasks: the models are the units
    rows = [{"method": "full", "model": f"m{m}", "zs_iimm": a, "zs_acc": b, "zs_rmg": c, "zs_l2m": c, "gain": 1.0 * a + 2.0 * b + 0.05 * e,
             "forgetting": -0.3 * a + 0.01 * e} for a, b, c, e, m in zip(iimm, acc, other, rng.normal(size=40), model)]
    claims = [c for c in fit_claims(rows) if "(full;" in c.claim]
    verdict = {c.claim.split(" (")[0]: c.verdict for c in claims}
    assert verdict["gain rises with zero-shot IIMM"] == "holds"
    assert verdict["IIMM predicts gain better than zero-shot accuracy, RMG and L2M"] == "contradicted"  # the accuracy explains more
    assert verdict["forgetting rises with zero-shot IIMM"] == "contradicted"  # it falls
    assert verdict["IIMM predicts forgetting better than zero-shot accuracy, RMG and L2M"] == "holds"  # R² 0.99 against 0.01
    estimators = [c for c in claims if "transferability estimators" in c.claim]  # the paper's comparison: no estimator in these rows
    assert {c.verdict for c in estimators} == {"not tested"} and {c.role for c in estimators} == {"paper"}
    claims = [c for c in claims if c not in estimators]
    assert {c.unit for c in claims} == {"models"} and {c.seeds for c in claims} == {10}  # 10 models, not 40 points
    # with an estimator that carries the gain's accuracy term, IIMM (R² 0.14) is beaten by it: contradicted
    with_h = [{**r, "zs_hscore": r["zs_acc"], "zs_transrate": r["zs_rmg"], "zs_gbc_spherical": r["zs_rmg"], "zs_gbc_diagonal": r["zs_rmg"],
               "zs_sfda": r["zs_rmg"]}
              for r in rows]
    got = {c.claim.split(" (")[0]: c for c in fit_claims(with_h) if "(full;" in c.claim}
    assert got["IIMM predicts gain better than the transferability estimators"].verdict == "contradicted"
    assert "hscore" in got["IIMM predicts gain better than the transferability estimators"].detail
    # the comparison with accuracy and the gap is beyond the paper (which compares transferability estimators)
    assert {c.role for c in claims if c.claim.startswith("IIMM predicts")} == {"beyond the paper"}
    assert {c.role for c in claims if "rises with" in c.claim} == {"paper"}
    # IIMM has the highest R² of noise: residuals of random numbers on IIMM and the accuracy, plus a trace of IIMM
    alt = 0.3 + 1e-3 * (np.arange(40) % 2)
    design = np.column_stack([np.ones(40), iimm, alt])
    e = rng.normal(size=40)
    forgetting = e - design @ np.linalg.lstsq(design, e, rcond=None)[0] + 0.02 * (iimm - iimm.mean())
    noise = [{**r, "zs_rmg": 0.3, "zs_l2m": 0.3, "zs_acc": a, "forgetting": f} for r, a, f in zip(rows, alt, forgetting)]
    assert np.corrcoef(iimm, forgetting)[0, 1] ** 2 > np.corrcoef(alt, forgetting)[0, 1] ** 2
    c = next(c for c in fit_claims(noise) if c.claim.startswith("IIMM predicts forgetting better than zero-shot") and "(full;" in c.claim)
    assert c.verdict == "not shown" and c.ci[0] < 0 < c.ci[1]  # the highest R² of noise is not a better predictor
    # ... and it says what the design could detect: (z_0.95 + z_0.80) times the bootstrap standard error
    from infogap.ablations.learn_forget.study import model_of, r2_difference

    full = [r for r in noise if r["method"] == "full"]
    d = r2_difference([r["zs_iimm"] for r in full], [r["zs_acc"] for r in full], [r["forgetting"] for r in full], [model_of(r) for r in full])
    assert c.mde == pytest.approx((1.644854 + 0.841621) * d["se"], rel=1e-5) and "not shown: this design detects" in c.detail
    # no effect: outcomes unrelated to IIMM never "hold"
    null = [{**r, "gain": g, "forgetting": f} for r, g, f in zip(rows, rng.normal(size=40), rng.normal(size=40))]
    assert not [c.claim for c in fit_claims(null) if c.verdict == "holds"]


def test_fit_intervals_are_clustered_by_model():
    """Tasks of one model share its level: pooled OLS counts 40 points as independent; the interval
    clustered by model (statsmodels' cluster-robust covariance, t with models - 1 degrees of freedom)
    is wider and matches the sandwich formula by hand."""
    from scipy import stats

    from infogap.ablations.learn_forget.study import ols_fit

    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(8), 5)
    x = rng.normal(size=8)[g] + 0.3 * rng.normal(size=40)
    y = 0.2 * x + rng.normal(size=8)[g] + 0.1 * rng.normal(size=40)
    fit, plain = ols_fit(x, y, g), ols_fit(x, y)
    X = np.column_stack([np.ones(40), x])
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    u = y - X @ beta
    bread = np.linalg.inv(X.T @ X)
    meat = sum(np.outer(X[g == c].T @ u[g == c], X[g == c].T @ u[g == c]) for c in range(8))
    G, n, k = 8, 40, 2
    cov = G / (G - 1) * (n - 1) / (n - k) * bread @ meat @ bread  # statsmodels' small-sample correction
    se = np.sqrt(cov[1, 1])
    t = stats.t.ppf(0.975, G - 1)
    assert fit["slope"] == pytest.approx(beta[1]) and fit["clusters"] == 8
    assert fit["ci"] == pytest.approx((beta[1] - t * se, beta[1] + t * se), rel=1e-6)
    assert fit["p_value"] == pytest.approx(2 * stats.t.sf(abs(beta[1] / se), G - 1), rel=1e-6)
    assert fit["ci"][1] - fit["ci"][0] > plain["ci"][1] - plain["ci"][0]


def test_settled_claims_are_equivalence_tests_on_the_models():
    from scipy import stats

    from infogap.ablations.learn_forget.study import settled_claims

    def rows(diffs):  # per model, 3 tasks whose gain minus half-budget gain average to the model's value
        return [{"method": "full", "model": f"m{i}", "task": t, "gain": 0.5 + d + e, "gain_half": 0.5}
                for i, d in enumerate(diffs) for t, e in zip("abc", (-0.01, 0.0, 0.01))]

    settled = [0.004, -0.003, 0.006, 0.001, -0.002, 0.003]
    (c,) = settled_claims(rows(settled), 0.02)
    assert c.verdict == "holds" and c.unit == "models" and c.seeds == 6 and c.kind == "equivalence"
    # TOST by hand: both one-sided t-tests against the margins
    d = np.array(settled)
    p = max(stats.ttest_1samp(d, -0.02, alternative="greater").pvalue, stats.ttest_1samp(d, 0.02, alternative="less").pvalue)
    assert c.p_value == pytest.approx(p, rel=1e-6)
    assert settled_claims(rows([0.05, 0.06, 0.04, 0.07]), 0.02)[0].verdict == "contradicted"  # still rising
    assert settled_claims(rows([0.03, -0.03, 0.01, -0.02]), 0.02)[0].verdict == "inconclusive"  # too few, too noisy
    assert settled_claims([{**r, "method": "bitfit"} for r in rows(settled)], 0.02)[0].claim.startswith("the bitfit gains")
    assert c.role == "beyond the paper"


def test_the_r2_difference_bootstrap_against_a_loop():
    """The vectorised cluster bootstrap equals a plain loop that draws the models, stacks their points and
    fits both lines; the p-values are (hits + 1) / (resamples + 1)."""
    from infogap.ablations.learn_forget.study import r2_difference

    rng = np.random.default_rng(3)
    model = np.repeat(np.arange(6), 4)
    x, c = rng.normal(size=24), rng.normal(size=24)
    y = 0.8 * x + 0.3 * c + 0.5 * rng.normal(size=24)
    got = r2_difference(x, c, y, model, resamples=300, seed=7)
    draws = np.random.default_rng(7).integers(0, 6, size=(300, 6))
    diffs = []
    for d in draws:
        idx = np.concatenate([np.nonzero(model == m)[0] for m in d])
        diffs.append(np.corrcoef(x[idx], y[idx])[0, 1] ** 2 - np.corrcoef(c[idx], y[idx])[0, 1] ** 2)
    diffs = np.array(diffs)
    assert got["diff"] == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2 - np.corrcoef(c, y)[0, 1] ** 2)
    assert got["ci"] == pytest.approx(tuple(np.quantile(diffs, [0.05, 0.95])), rel=1e-9)
    assert got["p"] == pytest.approx(((diffs <= 0).sum() + 1) / 301) and got["p_opposite"] == pytest.approx(((diffs >= 0).sum() + 1) / 301)


def test_the_positive_control_permutes_prompts_and_its_claim_fails_without_the_planted_effect():
    """``permute_prompts`` moves exactly round(q · classes) classes' prompts, each to its neighbour's;
    the control claim holds when the gain rises with IIMM across q, and not when the gain does not follow."""
    import torch

    from infogap.ablations.learn_forget.finetune import Task
    from infogap.ablations.learn_forget.study import control_claims, permute_prompts

    prompts = torch.arange(10).view(10, 1, 1)  # class c's prompt is the token c
    task = Task("object", [str(i) for i in range(10)], prompts, torch.zeros(4, 1), torch.zeros(4), torch.zeros(4, 1), torch.zeros(4))
    assert permute_prompts(task, 0.0).prompts.flatten().tolist() == list(range(10))
    assert permute_prompts(task, 0.5).prompts.flatten().tolist() == [1, 2, 3, 4, 0, 5, 6, 7, 8, 9]  # 5 classes, cyclically
    assert permute_prompts(task, 1.0).prompts.flatten().tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert permute_prompts(task, 0.1).prompts.flatten().tolist() == list(range(10))  # one class cannot move

    rng = np.random.default_rng(0)
    qs = (0.0, 0.25, 0.5, 0.75, 1.0)

    def rows(slope):
        return [{"control_q": q, "k": 5, "seed": s, "zs_iimm": 0.2 + 0.1 * q + 0.01 * rng.normal(), "zs_acc": 0.9 - 0.8 * q,
                 "gain": slope * q + 0.02 * rng.normal()} for s in range(3) for q in qs]

    (c,) = control_claims(rows(0.7))  # per model: gain 0.7 q against IIMM 0.1 q, a slope of about 7
    assert c.verdict == "holds" and c.role == "positive control" and c.seeds == 3 and c.unit == "models"
    assert c.mean == pytest.approx(7.0, rel=0.3) and "q = 0.5:" in c.detail
    assert control_claims(rows(0.0))[0].verdict != "holds"  # the gain does not follow: the control fails
    assert control_claims([])[0].verdict == "not tested"


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
            "--templates", "a {}.|a photo of a {}.", "--epochs", "2", "--seeds", "0", "--n-train", "64", "--n-eval", "64", "--out", str(out)]
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
        assert len(list(csv.DictReader(f))) == 4 * 4 * 11  # (3 methods + pooled) x 4 outcomes x 11 predictors (IIMM x 2, 6 estimators, acc, RMG, L2M)
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


def test_tasks_with_almost_no_zero_shot_error_leave_the_relative_gain_fit_and_are_named():
    """Relative gain is gain / (1 - zero-shot accuracy): a task at accuracy 0.99 turns a gain of -0.04 into
    -4 and decides the slope alone. Such points (error < 5 %) leave the relative-gain fit only."""
    from infogap.ablations.learn_forget.study import fit_claims, fits

    rng = np.random.default_rng(3)
    rows = []
    for m in range(6):
        for t, acc in (("object", 0.5), ("thickness", 0.6), ("colour", 0.99)):
            iimm = rng.uniform(0, 1)
            gain = 0.3 * iimm + 0.01 * rng.normal() if t != "colour" else -0.04
            rows.append({"method": "full", "model": f"m{m}", "task": t, "zs_iimm": iimm, "zs_acc": acc + 0.01 * rng.normal() if t != "colour" else acc,
                         "zs_rmg": 0.3, "zs_l2m": 0.3, "gain": gain, "relative_gain": gain / (1 - acc)})
    fit = next(f for f in fits(rows) if f["method"] == "full" and f["outcome"] == "relative_gain" and f["predictor"] == "iimm")
    assert fit["n"] == 12  # 6 models x 2 tasks: the 6 colour points (error 0.01) are out
    assert next(f for f in fits(rows) if f["method"] == "full" and f["outcome"] == "gain" and f["predictor"] == "iimm")["n"] == 18
    claim = next(c for c in fit_claims(rows) if c.claim.startswith("relative_gain rises") and "(full;" in c.claim)
    assert claim.verdict == "holds" and "left out: 6 points of the tasks colour (zero-shot error < 0.05)" in claim.detail


def test_the_learning_rate_search_picks_the_best_mean_validation_accuracy_by_hand():
    from infogap.ablations.learn_forget.study import choose_lr

    rows = [{"method": "full", "lr": lr, "val_acc": acc} for lr, accs in ((1e-3, (0.6, 0.8)), (1e-2, (0.9, 0.7)), (1e-1, (0.5, 0.6)))
            for acc in accs]  # means 0.70, 0.80, 0.55
    rows += [{"method": "linear", "lr": lr, "val_acc": 0.9} for lr in (0.3, 0.1)]  # a tie: the smaller rate
    rows += [{"method": "bitfit", "lr": 1e-2, "val_acc": 0.5}, {"method": "bitfit", "lr": 1e-3, "val_acc": 0.4}]
    assert choose_lr(rows) == {"full": 1e-2, "linear": 0.1, "bitfit": 1e-2}


@pytest.mark.slow
def test_analyze_learn_forget_lr_search_writes_its_table(tmp_path, capsys, random_checkpoint, monkeypatch):
    import csv

    from infogap.ablations.learn_forget import study
    from infogap.cli import main as infogap

    monkeypatch.setattr(study, "LR_GRID", {**study.LR_GRID, "linear": (1e-2, 1e-1)})
    out = tmp_path / "search"
    assert infogap(["analyze", "learn-forget", "--checkpoint", str(random_checkpoint("tiny")), "--lr-search", "--methods", "linear",
                    "--epochs", "2", "--n-train", "64", "--n-eval", "32", "--out", str(out)]) == 0
    with open(out / "lr_search.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 6 and {float(r["lr"]) for r in rows} == {1e-2, 1e-1}  # 2 rates x the 6 factor tasks
    assert all(0 <= float(r["val_acc"]) <= 1 and r["best_epoch"] in ("0", "1") for r in rows)
    best = study.choose_lr([{**r, "lr": float(r["lr"]), "val_acc": float(r["val_acc"])} for r in rows])["linear"]
    assert f"linear: lr {best:g}" in capsys.readouterr().out
    assert not (out / "learn_forget.json").exists(), "the search does not run the study"


def test_ncti_is_scored_per_task_over_the_models_of_the_rows():
    """NCTI ranks models on one task (the authors normalise its parts over the models they score): each
    task's rows get ``zs_ncti`` from that task's models only, the same for every method of a model."""
    from infogap.ablations.learn_forget.study import with_ncti
    from infogap.ablations.learn_forget.transfer import ncti_scores

    parts = {("m0", "object"): (1.0, 0.5, 2.0), ("m1", "object"): (3.0, 0.7, 2.5), ("m0", "colour"): (2.0, 0.9, 1.0),
             ("m1", "colour"): (2.0, 0.6, 3.0)}
    rows = [{"model": m, "task": t, "method": method, "zs_ncti_seli": a, "zs_ncti_ncc": b, "zs_ncti_vc": c}
            for (m, t), (a, b, c) in parts.items() for method in ("full", "linear")]
    out = with_ncti(rows)
    for task in ("object", "colour"):
        want = ncti_scores({m: {"ncti_seli": a, "ncti_ncc": b, "ncti_vc": c} for (m, t), (a, b, c) in parts.items() if t == task})
        assert all(r["zs_ncti"] == pytest.approx(want[r["model"]]) for r in out if r["task"] == task)
    # by hand, object: seli (0, 1), ncc (0, 1), vc (0, 1) -> m0 0, m1 1; colour: seli (0, 0), ncc (1, 0), vc (0, 1) -> m0 1, m1 -1
    assert [r["zs_ncti"] for r in out if r["method"] == "full"] == pytest.approx([0.0, 1.0, 1.0, -1.0])
    assert with_ncti(out) is out and with_ncti([{"task": "a"}]) == [{"task": "a"}]


def test_the_fits_say_what_the_models_differ_in():
    from infogap.ablations.learn_forget.study import model_of, varying

    rows = [{"k": k, "model_size": size, "seed": s} for k in (0, 5) for size in ("tiny", "small") for s in (0, 1)]
    assert varying(rows) == "k, model_size"
    assert varying([r for r in rows if r["model_size"] == "tiny"]) == "k"
    presence = [{"k": 1, "always_present": f, "seed": s} for f in ("colour", "thickness") for s in (0, 1)]
    assert varying(presence + [{"k": 5, "always_present": "object", "seed": 0}]) == "k, always_present"
    # the factor always named tells two k = 1 models of one seed apart: they are two clusters, not one
    assert len({model_of(r) for r in presence}) == 4
    assert varying([{"model": "a", "seed": None}, {"model": "b", "seed": None}]) == "named models"
    assert varying([{"k": 0, "seed": 0}, {"k": 0, "seed": 1}]) == "their seed only"
