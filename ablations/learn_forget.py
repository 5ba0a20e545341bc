"""Seed 003, causal: does the zero-shot Inter-Intra Modal Measure predict what fine-tuning on a task
gains and what the model forgets on the other tasks (Niss et al. 2024)? The models are trained at
k = 0..5 (so they span a known range of modality gaps); the tasks are the six factors of the synthetic
data (``infogap.train.finetune``).

Per trained run (computed once, kept in ``learn_forget.json``): the zero-shot measures of every task
(accuracy, IIMM and its parts, RMG, L2M), then for each method (full FLYP, linear probe, BitFit), task
and fine-tuning seed a fine-tune of ``STEPS`` steps from the run's checkpoint and the accuracy of
every task after it: the gain on the task and the forgetting elsewhere.

Report, as the published design: OLS fits of gain ~ IIMM and forgetting ~ IIMM (slope with its 95 %
interval, intercept, R²), per method and pooled over methods, on the (run, task) points (mean over
fine-tuning seeds), and the same fits with each competing predictor (zero-shot accuracy, RMG, L2M),
so the table says whether IIMM predicts better than the accuracy or the gap.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np

from infogap.ablations.analysis import FAILS, HOLDS, NOT_TESTED, Claim, cached_json
from infogap.data.factors import FACTOR_NAMES

METHODS = ("full", "linear", "bitfit")
FINETUNE_SEEDS = (0, 1, 2)
STEPS = 50  # the same budget for every task and method
BATCH_SIZE = 128
LR = {"full": 1e-4, "linear": 1e-2, "bitfit": 1e-3}
N_TRAIN, N_EVAL = 2048, 1024
PREDICTORS = ("iimm", "acc", "rmg", "l2m")  # zero-shot measures: IIMM first, then the competitors
OUTCOMES = ("gain", "forgetting")
EXTRA_AXES = ["method", "task"]


def run_learn_forget(run_dir: Path) -> dict:
    """learn_forget.json of a finished run: {zero_shot: {task: measures}, finetunes: [{method, task,
    finetune_seed, gain, relative_gain, off_task_change, forgetting, acc_before, acc_after}]}."""
    from infogap.train.embed import load_encoder
    from infogap.train.finetune import finetune, learn_forget, synthetic_tasks, zero_shot

    def compute() -> dict:
        enc = load_encoder(checkpoint=str(Path(run_dir) / "checkpoints" / "last.ckpt"), seed=0)
        tasks = synthetic_tasks(enc, FACTOR_NAMES, N_TRAIN, N_EVAL)
        zs = {t.name: zero_shot(enc.model, t) for t in tasks}
        before = {t: m["acc"] for t, m in zs.items()}
        out = []
        for method in METHODS:
            for task in tasks:
                for seed in FINETUNE_SEEDS:
                    module = finetune(copy.deepcopy(enc.model), task, method, STEPS, BATCH_SIZE, LR[method], seed, accelerator="cpu")
                    after = {t.name: module.accuracy(t) for t in tasks}
                    out.append({"method": method, "task": task.name, "finetune_seed": seed, **learn_forget(before, after, task.name),
                                "acc_before": before[task.name], "acc_after": after[task.name]})
        return {"zero_shot": zs, "finetunes": out}

    key = {"methods": list(METHODS), "seeds": list(FINETUNE_SEEDS), "steps": STEPS, "batch": BATCH_SIZE, "lr": LR,
           "n_train": N_TRAIN, "n_eval": N_EVAL}
    return cached_json(Path(run_dir) / "learn_forget.json", key, compute)


def rows(run, record):
    """One row per (method, task) of a run: the task's zero-shot measures and the gain and forgetting,
    means over the fine-tuning seeds."""
    result = run_learn_forget(run.dir)
    out = []
    for method in METHODS:
        for task, zs in result["zero_shot"].items():
            sel = [f for f in result["finetunes"] if f["method"] == method and f["task"] == task]
            if not sel:
                continue
            row = {"method": method, "task": task, **record["metrics"], **{f"zs_{k}": v for k, v in zs.items()}}
            for key in ("gain", "relative_gain", "forgetting", "acc_after"):
                row[key] = float(np.nanmean([f[key] for f in sel]))
            out.append(row)
    return out


# --- statistics ---------------------------------------------------------------------------------
def ols_fit(x, y) -> dict:
    """OLS of y on x (``statsmodels``): slope, its 95 % interval and p-value, intercept, R², n; NaN
    fields when x or y has no spread or fewer than 3 points."""
    import statsmodels.api as sm

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    nan = {"slope": math.nan, "ci": (math.nan, math.nan), "p_value": math.nan, "intercept": math.nan, "r2": math.nan, "n": int(len(x))}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return nan
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    lo, hi = fit.conf_int()[1]
    return {"slope": float(fit.params[1]), "ci": (float(lo), float(hi)), "p_value": float(fit.pvalues[1]),
            "intercept": float(fit.params[0]), "r2": float(fit.rsquared), "n": int(len(x))}


def fits(rows) -> list[dict]:
    """Every (outcome, predictor) fit per method and pooled ("all"), on the (run, task) points."""
    out = []
    for method in [*METHODS, "all"]:
        sel = [r for r in rows if method == "all" or r["method"] == method]
        if not sel:
            continue
        for outcome in OUTCOMES:
            for predictor in PREDICTORS:
                fit = ols_fit([r[f"zs_{predictor}"] for r in sel], [r[outcome] for r in sel])
                out.append({"method": method, "outcome": outcome, "predictor": predictor, **fit})
    return out


def claims(rows, design):
    """Per method and pooled: the outcome rises with IIMM (slope > 0, p < 0.05; a poorly separated task
    has more to gain and pulls the model further), and IIMM explains it better than each competing
    predictor (R² of IIMM above R² of zero-shot accuracy, RMG and L2M)."""
    out = []
    table = fits(rows)
    for method in [*METHODS, "all"]:
        for outcome in OUTCOMES:
            by = {f["predictor"]: f for f in table if f["method"] == method and f["outcome"] == outcome}
            name = "pooled over methods" if method == "all" else method
            claim = f"{outcome} rises with zero-shot IIMM ({name}; OLS slope > 0, p < 0.05)"
            f = by.get("iimm")
            if f is None or math.isnan(f["slope"]):
                out.append(Claim(claim, NOT_TESTED, f"{f['n'] if f else 0} (run, task) points; a fit needs 3 and spread in both "
                                                    f"{outcome} and IIMM (a frozen tower forgets nothing)"))
                continue
            out.append(Claim(claim, HOLDS if f["slope"] > 0 and f["p_value"] < 0.05 else FAILS,
                             f"slope {f['slope']:+.3f}, 95 % CI [{f['ci'][0]:+.3f}, {f['ci'][1]:+.3f}], p = {f['p_value']:.3g}, "
                             f"R² = {f['r2']:.3f}, {f['n']} points", f["n"], f["slope"], f["ci"], f["p_value"]))
            others = {p: g for p, g in by.items() if p != "iimm" and not math.isnan(g["r2"])}
            claim = f"IIMM predicts {outcome} better than zero-shot accuracy, RMG and L2M ({name}; the highest R²)"
            if not others:
                out.append(Claim(claim, NOT_TESTED, "no competing predictor with spread"))
                continue
            best = max(others, key=lambda p: others[p]["r2"])
            detail = f"R² IIMM {f['r2']:.3f}; " + ", ".join(f"{p} {g['r2']:.3f}" for p, g in others.items())
            out.append(Claim(claim, HOLDS if f["r2"] > others[best]["r2"] else FAILS, detail, f["n"]))
    return out


def figures(ablation, runs, results):
    """Gain and forgetting against zero-shot IIMM, one panel per method, points coloured by k, with the
    OLS line; and the table of every fit (``fits.csv``)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(results / "summary.csv") as f:
        table = [{k: (float(v) if k not in ("method", "task") and v not in ("", None) else v) for k, v in r.items()}
                 for r in csv.DictReader(f)]
    if not table or "zs_iimm" not in table[0]:
        return []
    with open(results / "fits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "outcome", "predictor", "slope", "ci", "p_value", "intercept", "r2", "n"])
        writer.writeheader()
        writer.writerows(fits(table))
    methods = [m for m in METHODS if any(r["method"] == m for r in table)]
    fig, axs = plt.subplots(len(OUTCOMES), len(methods), figsize=(3.6 * len(methods), 3.2 * len(OUTCOMES)), squeeze=False)
    ks = sorted({r.get("k") for r in table if r.get("k") is not None})
    cmap = plt.get_cmap("viridis")
    for i, outcome in enumerate(OUTCOMES):
        for j, method in enumerate(methods):
            ax = axs[i][j]
            sel = [r for r in table if r["method"] == method]
            for k in ks:
                pts = [r for r in sel if r.get("k") == k]
                ax.scatter([r["zs_iimm"] for r in pts], [r[outcome] for r in pts], s=12, color=cmap(ks.index(k) / max(1, len(ks) - 1)),
                           label=f"k={k:g}")
            fit = ols_fit([r["zs_iimm"] for r in sel], [r[outcome] for r in sel])
            if not math.isnan(fit["slope"]):
                xs = np.linspace(min(r["zs_iimm"] for r in sel), max(r["zs_iimm"] for r in sel), 2)
                ax.plot(xs, fit["intercept"] + fit["slope"] * xs, "k-", lw=1, label=f"R² = {fit['r2']:.2f}")
            ax.set_title(f"{method}", fontsize=9)
            ax.set_xlabel("zero-shot IIMM")
            ax.set_ylabel(outcome)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.tight_layout()
    path = results / "learn_forget_vs_iimm.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
