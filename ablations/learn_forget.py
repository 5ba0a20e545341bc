"""Seed 003: does the zero-shot Inter-Intra Modal Measure predict what fine-tuning on a task
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
so the table says whether IIMM predicts better than the accuracy or the gap. Beside each, the slope
within models (an intercept per model, the fixed-effects estimator): the tasks of one model are not
independent points, and a trend between models is not one within them.

Any local models and labelled image folders, with the same fits (``infogap analyze learn-forget``)::

    infogap analyze learn-forget --checkpoint runs/a/checkpoints/last.ckpt --checkpoint runs/b/checkpoints/last.ckpt
    infogap analyze learn-forget --model ViT-B-32=/models/b32_laion.pt --model ViT-B-32=/models/b32_openai.pt \
        --folder /data/pets --folder /data/flowers --no-synthetic --out results/learn_forget_local

Each model is fine-tuned on every task (the six synthetic factors, rendered for the model, unless
``--no-synthetic``; each ``--folder``, ImageFolder layout, split per class into training and evaluation
images). Writes ``learn_forget.json`` (every model's measures and fine-tunes), ``points.csv``, ``fits.csv``
and the scatter figure.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from infogap.ablations.analysis import ALPHA, FAILS, HOLDS, NOT_TESTED, Claim, cached_json, effect_verdict, save_figure
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


def measure(enc, tasks, methods=None, seeds=None, steps=None, batch_size=None, lr=None) -> dict:
    """The zero-shot measures of every task for the model of ``enc`` (an ``infogap.train.embed.Encoder``),
    then per method, task and fine-tuning seed a fine-tune from the model and every task's accuracy
    after it: {zero_shot: {task: measures}, finetunes: [{method, task, finetune_seed, gain,
    relative_gain, off_task_change, forgetting, acc_before, acc_after}]}. Defaults: the module's."""
    from infogap.train.finetune import accuracies, finetune, learn_forget, zero_shots

    methods, seeds = methods or METHODS, seeds or FINETUNE_SEEDS
    steps, batch_size, lr = steps or STEPS, batch_size or BATCH_SIZE, lr or LR
    zs = zero_shots(enc.model, tasks)
    before = {t: m["acc"] for t, m in zs.items()}
    out = []
    for method in methods:
        for task in tasks:
            for seed in seeds:
                module = finetune(copy.deepcopy(enc.model), task, method, steps, batch_size, lr[method], seed)
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


def run_learn_forget(run_dir: Path) -> dict:
    """``measure`` of a finished synthetic run on the six factor tasks, computed once from its last
    checkpoint and kept in ``learn_forget.json`` (recomputed when the module's settings change)."""
    from infogap.train.embed import load_encoder
    from infogap.train.finetune import synthetic_tasks

    def compute() -> dict:
        enc = load_encoder(checkpoint=str(Path(run_dir) / "checkpoints" / "last.ckpt"), seed=0)
        return measure(enc, synthetic_tasks(enc, FACTOR_NAMES, N_TRAIN, N_EVAL))

    key = {"methods": list(METHODS), "seeds": list(FINETUNE_SEEDS), "steps": STEPS, "batch": BATCH_SIZE, "lr": LR,
           "n_train": N_TRAIN, "n_eval": N_EVAL}
    return cached_json(Path(run_dir) / "learn_forget.json", key, compute)


def rows(run, record):
    """One row per (method, task) of a run: its final metrics, the task's zero-shot measures and the gain
    and forgetting (``points``)."""
    return [{"method": p["method"], "task": p["task"], **record["metrics"], **p} for p in points(run_learn_forget(run.dir))]


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


def claims(rows, design):
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


def figures(ablation, runs, results):
    """Gain and forgetting against zero-shot IIMM per method, points coloured by k (``scatter``), and the
    table of every fit (``fits.csv``)."""
    from infogap.ablations.analysis import read_summary

    table = read_summary(results, ("method", "task"))
    if not table or "zs_iimm" not in table[0]:
        return []
    write_fits(table, results / "fits.csv")
    return [scatter(table, results / "learn_forget_vs_iimm.png", "k")]


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


# --- infogap analyze learn-forget: any local models and folders ------------------------------------
def _model_spec(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--model {text!r}: give NAME=PATH (an open_clip model and its local checkpoint; NAME= for random weights)")
    return name, path


def main(argv: list[str]) -> int:
    from infogap.train.embed import load_encoder
    from infogap.train.finetune import folder_task, synthetic_tasks

    p = argparse.ArgumentParser(prog="infogap analyze learn-forget", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", default=[], help="an infogap run's checkpoint (repeatable)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="an open_clip model and its local checkpoint (repeatable)")
    p.add_argument("--folder", action="append", default=[], help="a labelled image folder as a task (repeatable; BPE models)")
    p.add_argument("--templates", default="a photo of a {}.", help="class prompt templates for --folder, separated by |")
    p.add_argument("--no-synthetic", action="store_true", help="leave out the six synthetic factor tasks")
    p.add_argument("--methods", default=",".join(METHODS), help=f"fine-tuning methods (default {','.join(METHODS)})")
    p.add_argument("--seeds", default=",".join(map(str, FINETUNE_SEEDS)), help="fine-tuning seeds (default 0,1,2)")
    p.add_argument("--steps", type=int, default=STEPS, help=f"fine-tuning steps per task (default {STEPS})")
    p.add_argument("--n-train", type=int, default=N_TRAIN, help="synthetic training images per task")
    p.add_argument("--n-eval", type=int, default=N_EVAL, help="synthetic evaluation images per task")
    p.add_argument("--out", default="results/learn_forget_local")
    args = p.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown method {unknown[0] if unknown else '(none)'}; choose from {', '.join(METHODS)}")
    seeds = tuple(int(x) for x in args.seeds.split(","))
    if not args.checkpoint and not args.model:
        raise ValueError("give models: --checkpoint CKPT (infogap runs) and/or --model NAME=PATH (open_clip)")
    if args.no_synthetic and not args.folder:
        raise ValueError("--no-synthetic leaves no task: add --folder DIR")
    templates = [t.strip() for t in args.templates.split("|") if t.strip()]
    models = [(c, dict(checkpoint=c)) for c in args.checkpoint] + [(f"{n}={path}", dict(model=n, pretrained=path or None)) for n, path in map(_model_spec, args.model)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, table = {}, []
    for label, spec in models:
        enc = load_encoder(**spec)
        if args.folder and enc.word_level:
            raise ValueError(f"{label}: a word-level synthetic model cannot read the class prompts of --folder (use BPE models)")
        tasks = [] if args.no_synthetic else synthetic_tasks(enc, FACTOR_NAMES, args.n_train, args.n_eval)
        tasks += [folder_task(enc, folder, templates) for folder in args.folder]
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"two tasks share a name: {sorted(names)} (folders are named by their last part)")
        print(f"{label}: {len(tasks)} tasks x {len(methods)} methods x {len(seeds)} seeds", file=sys.stderr, flush=True)
        results[label] = measure(enc, tasks, methods, seeds, args.steps)
        table += [{"model": label, **pt} for pt in points(results[label])]
    (out / "learn_forget.json").write_text(json.dumps(results, indent=1) + "\n")
    with open(out / "points.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in table for k in r)))
        writer.writeheader()
        writer.writerows(table)
    write_fits(table, out / "fits.csv")
    figure = scatter(table, out / "learn_forget_vs_iimm.png", "model")
    for claim in claims(table, {}):
        print(claim.line())
    print(f"\npoints: {out / 'points.csv'}\nfits:   {out / 'fits.csv'}\nfigure: {figure}", file=sys.stderr)
    return 0
