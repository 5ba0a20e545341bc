"""Seed 003: does the zero-shot Inter-Intra Modal Measure predict what fine-tuning on a task
gains and what the model forgets on the other tasks (Niss et al. 2024)? The models are trained at
k = 0..5 (so they span a known range of modality gaps); the tasks are the six factors of the synthetic
data (``infogap.ablations.learn_forget.finetune``).

Per trained run (computed once, kept in ``learn_forget.json``): the zero-shot measures of every task
(accuracy, IIMM and its parts, RMG, L2M), then for each method (full FLYP, linear probe, BitFit), task
and fine-tuning seed a fine-tune of ``STEPS`` steps from the run's checkpoint and the accuracy of
every task after it: the gain on the task and the forgetting elsewhere.

Report, as the published design: OLS fits of gain ~ IIMM and forgetting ~ IIMM (slope with its 95 %
interval, intercept, R²), per method and pooled over methods, on the (run, task) points (mean over
fine-tuning seeds), and the same fits with each competing predictor (zero-shot accuracy, RMG, L2M),
so the table says whether IIMM predicts better than the accuracy or the gap. Beside each, the slope
within models (an intercept per model, the fixed-effects estimator): the tasks of one model are not
independent points, and a trend between models is not one within them.
"""
from __future__ import annotations

import copy
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infogap.ablations.runner.claims import ALPHA, FAILS, HOLDS, NOT_TESTED, Claim, effect_verdict
from infogap.ablations.runner.results import cached_json, read_summary, save_figure
from infogap.ablations.runner.study import Study, settings_dict
from infogap.data.factors import FACTOR_NAMES

METHODS = ("full", "linear", "bitfit")
PREDICTORS = ("iimm", "acc", "rmg", "l2m")  # zero-shot measures: IIMM first, then the competitors
OUTCOMES = ("gain", "forgetting")


@dataclass(frozen=True)
class Settings:
    methods: tuple[str, ...] = METHODS
    finetune_seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 50  # fine-tuning steps: the same budget for every task and method
    batch_size: int = 128
    lr: dict = field(default_factory=lambda: {"full": 1e-4, "linear": 1e-2, "bitfit": 1e-3})  # per method
    n_train: int = 2048  # synthetic training images per task
    n_eval: int = 1024  # synthetic evaluation images per task

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"learn_forget methods: unknown method {unknown[0] if unknown else '(none)'}; choose from {', '.join(METHODS)}")
        missing = [m for m in self.methods if m not in self.lr]
        if missing:
            raise ValueError(f"learn_forget lr: no learning rate for method {missing[0]!r}")


def measure(enc, tasks, settings: Settings) -> dict:
    """The zero-shot measures of every task for the model of ``enc`` (an ``infogap.train.embed.Encoder``),
    then per method, task and fine-tuning seed a fine-tune from the model and every task's accuracy
    after it: {zero_shot: {task: measures}, finetunes: [{method, task, finetune_seed, gain,
    relative_gain, off_task_change, forgetting, acc_before, acc_after}]}."""
    from infogap.ablations.learn_forget.finetune import accuracies, finetune, learn_forget, zero_shots

    zs = zero_shots(enc.model, tasks)
    before = {t: m["acc"] for t, m in zs.items()}
    out = []
    for method in settings.methods:
        for task in tasks:
            for seed in settings.finetune_seeds:
                module = finetune(copy.deepcopy(enc.model), task, method, settings.steps, settings.batch_size, settings.lr[method], seed)
                after = accuracies(module, tasks)
                out.append({"method": method, "task": task.name, "finetune_seed": seed, **learn_forget(before, after, task.name),
                            "acc_before": before[task.name], "acc_after": after[task.name]})
    return {"zero_shot": zs, "finetunes": out}


def points(result: dict) -> list[dict]:
    """One point per (method, task) of a model: the task's zero-shot measures (``zs_*``) and the gain and
    forgetting, means over the fine-tuning seeds."""
    out = []
    for method in dict.fromkeys(f["method"] for f in result["finetunes"]):
        for task, zs in result["zero_shot"].items():
            sel = [f for f in result["finetunes"] if f["method"] == method and f["task"] == task]
            if sel:
                out.append({"method": method, "task": task, **{f"zs_{k}": v for k, v in zs.items()},
                            **{k: float(np.nanmean([f[k] for f in sel])) for k in ("gain", "relative_gain", "forgetting", "acc_after")}})
    return out


def run_learn_forget(run_dir: Path, settings: Settings) -> dict:
    """``measure`` of a finished synthetic run on the six factor tasks, computed once from its last
    checkpoint and kept in ``learn_forget.json`` (recomputed when the settings change)."""
    from infogap.ablations.learn_forget.finetune import synthetic_tasks
    from infogap.train.embed import load_encoder

    def compute() -> dict:
        enc = load_encoder(checkpoint=str(Path(run_dir) / "checkpoints" / "last.ckpt"), seed=0)
        return measure(enc, synthetic_tasks(enc, FACTOR_NAMES, settings.n_train, settings.n_eval), settings)

    return cached_json(Path(run_dir) / "learn_forget.json", settings_dict(settings), compute)


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


def within_model_fit(x, y, groups) -> dict:
    """The slope of y on x within models: OLS with an intercept per model (the fixed-effects, or
    within, estimator; ``statsmodels`` ``y ~ x + C(model)``), so the tasks of one model are compared
    only with each other and a trend between models does not pass for one within them. (A random
    intercept would assume the models' levels independent of x; here IIMM is set by the pretraining,
    so it is not.) Returns {within_slope, within_ci, within_p, models}; NaN fields for fewer than 2
    models, no spread of x within any model, none of y, or no residual degrees of freedom."""
    import pandas as pd
    import statsmodels.formula.api as smf

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    g = np.asarray([str(v) for v in groups])
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y, g = x[keep], y[keep], g[keep]
    names = sorted(set(g))
    out = {"within_slope": math.nan, "within_ci": (math.nan, math.nan), "within_p": math.nan, "models": len(names)}
    if len(names) < 2 or not any(np.ptp(x[g == m]) > 0 for m in names) or np.ptp(y) == 0 or len(x) <= len(names) + 1:
        return out
    fit = smf.ols("y ~ x + C(model)", data=pd.DataFrame({"x": x, "y": y, "model": g})).fit()
    lo, hi = fit.conf_int().loc["x"]
    return {**out, "within_slope": float(fit.params["x"]), "within_ci": (float(lo), float(hi)), "within_p": float(fit.pvalues["x"])}


def model_of(row: dict) -> tuple:
    """Which model a point belongs to: ``model`` (``infogap analyze learn-forget``) or the run's k and seed."""
    return tuple(row.get(key) for key in ("model", "k", "seed"))


def fits(rows) -> list[dict]:
    """Every (outcome, predictor) fit per method and pooled ("all"), on the (run, task) points: the OLS
    over all points (``ols_fit``) and the slope within models (``within_model_fit``)."""
    out = []
    for method in [*METHODS, "all"]:
        sel = [r for r in rows if method == "all" or r["method"] == method]
        if not sel:
            continue
        for outcome in OUTCOMES:
            for predictor in PREDICTORS:
                x, y = [r[f"zs_{predictor}"] for r in sel], [r[outcome] for r in sel]
                out.append({"method": method, "outcome": outcome, "predictor": predictor, **ols_fit(x, y),
                            **within_model_fit(x, y, [model_of(r) for r in sel])})
    return out


def fit_claims(rows) -> list:
    """Per method and pooled: the outcome rises with IIMM (slope > 0, p < 0.05; a poorly separated task
    has more to gain and pulls the model further), and IIMM explains it better than each competing
    predictor (R² of IIMM above R² of zero-shot accuracy, RMG and L2M, and the IIMM fit itself at
    p < 0.05: the highest of R²s that are all noise predicts nothing)."""
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
            within = ("" if math.isnan(f["within_slope"]) else
                      f"; within models (an intercept per model, {f['models']} models): slope {f['within_slope']:+.3f}, "
                      f"95 % CI [{f['within_ci'][0]:+.3f}, {f['within_ci'][1]:+.3f}], p = {f['within_p']:.3g}")
            out.append(Claim(claim, effect_verdict(f["slope"] > 0, f["p_value"]),
                             f"slope {f['slope']:+.3f}, 95 % CI [{f['ci'][0]:+.3f}, {f['ci'][1]:+.3f}], p = {f['p_value']:.3g}, "
                             f"R² = {f['r2']:.3f}, {f['n']} points{within}", f["n"], f["slope"], f["ci"], f["p_value"]))
            others = {p: g for p, g in by.items() if p != "iimm" and not math.isnan(g["r2"])}
            claim = f"IIMM predicts {outcome} better than zero-shot accuracy, RMG and L2M ({name}; the highest R², IIMM fit at p < 0.05)"
            if not others:
                out.append(Claim(claim, NOT_TESTED, "no competing predictor with spread"))
                continue
            best = max(others, key=lambda p: others[p]["r2"])
            fits_at_all = f["p_value"] < ALPHA
            detail = (f"R² IIMM {f['r2']:.3f} (slope {f['slope']:+.3f}, p = {f['p_value']:.3g}"
                      f"{'' if fits_at_all else ': IIMM explains nothing at p < 0.05'}); "
                      + ", ".join(f"{p} {g['r2']:.3f}" for p, g in others.items()))
            out.append(Claim(claim, HOLDS if fits_at_all and f["r2"] > others[best]["r2"] else FAILS, detail, f["n"]))
    return out


def write_fits(table: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "outcome", "predictor", "slope", "ci", "p_value", "intercept", "r2", "n",
                                               "within_slope", "within_ci", "within_p", "models"])
        writer.writeheader()
        writer.writerows(fits(table))
    return path


def scatter(table: list[dict], path: Path, colour_by: str) -> Path:
    """Gain and forgetting (rows) against zero-shot IIMM, one panel per method (columns), points
    coloured by ``colour_by`` (k, or the model), with the OLS line and its R²."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in METHODS if any(r["method"] == m for r in table)]
    fig, axs = plt.subplots(len(OUTCOMES), len(methods), figsize=(3.6 * len(methods), 3.2 * len(OUTCOMES)), squeeze=False)
    groups = list(dict.fromkeys(r.get(colour_by) for r in sorted(table, key=lambda r: str(r.get(colour_by)))))
    cmap = plt.get_cmap("viridis")
    for i, outcome in enumerate(OUTCOMES):
        for j, method in enumerate(methods):
            ax = axs[i][j]
            sel = [r for r in table if r["method"] == method]
            for g, group in enumerate(groups):
                pts = [r for r in sel if r.get(colour_by) == group]
                label = f"{colour_by}={group:g}" if isinstance(group, float) else str(group)
                ax.scatter([r["zs_iimm"] for r in pts], [r[outcome] for r in pts], s=12, color=cmap(g / max(1, len(groups) - 1)), label=label)
            fit = ols_fit([r["zs_iimm"] for r in sel], [r[outcome] for r in sel])
            if not math.isnan(fit["slope"]):
                xs = np.linspace(min(r["zs_iimm"] for r in sel), max(r["zs_iimm"] for r in sel), 2)
                ax.plot(xs, fit["intercept"] + fit["slope"] * xs, "k-", lw=1, label=f"R² = {fit['r2']:.2f}")
            ax.set_title(method, fontsize=9)
            ax.set_xlabel("zero-shot IIMM")
            ax.set_ylabel(outcome)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    return save_figure(fig, path)




class LearnForget(Study):
    Settings = Settings
    extra_axes = ("method", "task")

    def rows(self, run, record):
        """One row per (method, task) of a run: its final metrics, the task's zero-shot measures and the gain
        and forgetting (``points``)."""
        return [{"method": p["method"], "task": p["task"], **record["metrics"], **p} for p in points(run_learn_forget(run.dir, self.settings))]

    def claims(self, rows, design):
        return fit_claims(rows)

    def figures(self, ablation, runs, results):
        """Gain and forgetting against zero-shot IIMM per method, points coloured by k (``scatter``), and the
        table of every fit (``fits.csv``)."""
        table = read_summary(results, ("method", "task"))
        if not table or "zs_iimm" not in table[0]:
            return []
        write_fits(table, results / "fits.csv")
        return [scatter(table, results / "learn_forget_vs_iimm.png", "k")]
