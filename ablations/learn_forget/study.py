"""Niss et al., arXiv 2407.15731, made causal (``infogap ablate learn_forget``, docs/results/learn_forget.md): does the zero-shot Inter-Intra Modal Measure predict what fine-tuning on a task
gains and what the model forgets on the other tasks (Niss et al. 2024)? The models differ in more than
k, as the paper's do: the tiny CLIP at k = 0, 2, 5 with the object always named and at k = 1 with colour,
thickness or scaling always named (the imbalance and presence studies' runs: they span a known range of
modality gaps and of what each model knows for more than one reason; each fit says what its models
differ in, ``varying``); the tasks are the six factors of the synthetic
data (``infogap.ablations.learn_forget.finetune``), plus evaluation-only tasks on a held-out glyph set
that no fine-tuning and no training run sees (forgetting out of domain, as published).

Per trained run (computed once, kept in ``learn_forget.json``): the zero-shot measures of every task
(accuracy; IIMM and its parts on the task's training images, as the reference computes it, and on its
evaluation images; the transferability estimators; RMG, L2M), then for each method (the authors'
end-to-end ``full``, linear probe and bias tuning; ``flyp`` on request), task and fine-tuning seed a
fine-tune from the run's checkpoint with the authors' protocol (``finetune.finetune``: cross-entropy
against every class prompt, SGD, ``epochs`` epochs, the best epoch on 10 % of the training images held
out), with class-name prompts (the class word only: never a value of another factor), and the accuracy
of every task after it: the gain and relative gain (gain / zero-shot error) on the task, the forgetting
on the other in-domain tasks and out of domain; and the gain of a fine-tune at half the epochs, with its
own best-epoch choice (have the gains settled within the budget?): with SGD's constant rate that run is the
first half of the full one, batch for batch, so it is read off it (``half_budget_accuracy``). The learning rates (the
authors' 1e-6 is for large pretrained models) come from ``lr_search`` on models of a seed no claim uses.

Report, as the published design: OLS fits of each outcome on IIMM, per method and pooled over methods,
on the (model, task) points (means over fine-tuning seeds), with the intervals and p-values clustered
by model (the unit: the tasks of one model are not independent); the same fits on each competing
predictor (zero-shot accuracy, RMG, L2M; and IIMM on evaluation images beside), so the table says
whether IIMM predicts better; and the slope within models (an intercept per model, the fixed-effects
estimator), since a trend between models is not one within them.

Deviation from the published setting, forced by the synthetic world: the word-level models read only
factor words, so a class-name prompt is the class word alone (templates "a photo of a {}" exist only
for BPE models and image folders). Each task draws its images from a distribution of its own (the
object and the task's factor vary, the other attributes are held: ``finetune.task_force``), as the
paper's tasks are different datasets, so that S_intra differs between tasks (``task_images: shared``
gives the earlier single image set).
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infogap.ablations.kit.claims import (BEYOND, CONTROL, NOT_SHOWN, NOT_TESTED, PAPER, POWER, Claim, cite, coefficient_claim, effect_verdict,
                                          equivalence_claim, paired_claim, power_text)
from infogap.ablations.kit.results import cached_json, read_summary, save_figure
from infogap.ablations.kit.study import Study, settings_dict
from infogap.ablations.learn_forget.finetune import METHODS, OPTIMIZERS
from infogap.ablations.learn_forget.transfer import ESTIMATORS
from infogap.data.factors import FACTOR_NAMES

PREDICTORS = ("iimm", "iimm_eval", *ESTIMATORS, "acc", "rmg", "l2m")  # zero-shot measures: IIMM (training images) first, then the rest
COMPETITORS = {"estimators": ESTIMATORS, "accuracy and gap": ("acc", "rmg", "l2m")}  # what IIMM is compared with: the paper's, and beyond it
MIN_ERROR = 0.05  # a task whose zero-shot error is below this leaves the relative-gain fits: gain / error explodes near 0 error
OUTCOMES = ("gain", "relative_gain", "forgetting", "forgetting_ood")
MIN_CLUSTERS = 3  # models: the fewest a cluster-robust interval is computed from


# Learning rates per method for the authors' protocol (SGD, 10 epochs, batch 128, best of 10 % held out), chosen by
# ``lr_search`` over LR_GRID on two models of a seed no claim uses (k = 0 and 5, seed 9, the default recipe): the rate with
# the best mean validation accuracy over the six factor tasks of both; the table is in docs/results/learn_forget.md.
LR = {"full": 3e-3, "flyp": 1e-3, "linear": 1e-1, "bitfit": 3e-2}
LR_GRID = {"full": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1), "flyp": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1), "linear": (1e-2, 3e-2, 1e-1, 3e-1, 1.0),
           "bitfit": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)}


@dataclass(frozen=True)
class Settings:
    methods: tuple[str, ...] = ("full", "linear", "bitfit")  # the authors' clip, probe and bias; flyp is the fourth
    finetune_seeds: tuple[int, ...] = (0, 1, 2)
    # the authors' protocol (``finetune.finetune``): epochs over the training images less val_fraction held out, the best epoch kept
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd: momentum 0.9, constant learning rate (the authors'); adamw: warm-up then cosine
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    lr: dict = field(default_factory=lambda: dict(LR))  # per method: ``lr_search`` on models of a seed no claim uses (LR's comment)
    n_train: int = 2048  # synthetic training images per task
    n_eval: int = 1024  # synthetic evaluation images per task
    prompts: str = "class"  # class: the class word only (the published protocol); full: captions naming every factor
    templates: tuple[str, ...] = ("{}",)  # class-name templates (a word-level model takes only "{}")
    ood: tuple[str, ...] = ("object", "colour")  # evaluation-only tasks on the held-out glyph set
    task_images: str = "own"  # own: each task's images from a distribution of its own (the other attributes held); shared: one image set
    settled_margin: float = 0.02  # gains have settled when the gain at the full budget is within this of the gain at half
    # the positive control (``control_points``): on the runs at k = control_k, the class prompts of a fraction q of
    # control_task's classes permuted cyclically, then a fine-tune with control_method (finetune_seeds[0])
    control_k: int = 5
    control_task: str = "object"
    control_fractions: tuple[float, ...] = (0.0, 0.2, 0.3, 0.4, 0.5)  # at most half the classes: what a 10-epoch fine-tune can remap (docs)
    control_method: str = "full"

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"learn_forget methods: unknown method {unknown[0] if unknown else '(none)'}; choose from {', '.join(METHODS)}")
        missing = [m for m in self.methods if m not in self.lr]
        if missing:
            raise ValueError(f"learn_forget lr: no learning rate for method {missing[0]!r}")
        if self.prompts not in ("class", "full"):
            raise ValueError(f"learn_forget prompts: 'class' or 'full', got {self.prompts!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"learn_forget optimizer: one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.epochs < 2:
            raise ValueError(f"learn_forget epochs: at least 2 (the half-budget fine-tune runs epochs // 2), got {self.epochs}")
        if self.task_images not in ("own", "shared"):
            raise ValueError(f"learn_forget task_images: 'own' or 'shared', got {self.task_images!r}")


def measure(enc, tasks, settings: Settings) -> dict:
    """The zero-shot measures of every task for the model of ``enc`` (an ``infogap.train.embed.Encoder``),
    then per method, fine-tuning task and fine-tuning seed a fine-tune from the model and every task's
    accuracy after it: {zero_shot: {task: measures}, finetunes: [{method, task, finetune_seed, gain,
    relative_gain, off_task_change, forgetting, forgetting_ood, gain_half, acc_before, acc_after}]}."""
    from infogap.ablations.learn_forget.finetune import accuracies, learn_forget, zero_shots

    zs = zero_shots(enc.model, tasks)
    before = {t: m["acc"] for t, m in zs.items()}
    ood = [t.name for t in tasks if not t.finetune]
    out = []
    for method in settings.methods:
        for task in (t for t in tasks if t.finetune):
            for seed in settings.finetune_seeds:
                module = run_finetune(enc.model, task, method, settings, seed, keep_half=True)
                after = accuracies(module, tasks)
                out.append({"method": method, "task": task.name, "finetune_seed": seed, **learn_forget(before, after, task.name, ood),
                            "gain_half": half_budget_accuracy(module, enc.model, task, method, settings, seed) - before[task.name],
                            "best_epoch": module.best_epoch,
                            "acc_before": before[task.name], "acc_after": after[task.name]})
    return {"zero_shot": zs, "finetunes": out, "prompts": settings.prompts, "ood_tasks": ood}


def run_finetune(model, task, method: str, settings: Settings, seed: int, epochs: int | None = None, keep_half: bool = False):
    """``finetune.finetune`` of a copy of ``model`` on ``task`` with the study's protocol (``epochs``: the
    settings' unless given). With ``keep_half`` and ``sgd`` the full-budget run also keeps what a run of
    half the epochs would return (``FineTune.early``), which ``half_budget_accuracy`` reads."""
    from infogap.ablations.learn_forget.finetune import finetune

    epochs = epochs or settings.epochs
    early = settings.epochs // 2 if keep_half and settings.optimizer == "sgd" and epochs == settings.epochs else None
    return finetune(copy.deepcopy(model), task, method, epochs, settings.batch_size, settings.lr[method], seed,
                    optimizer=settings.optimizer, weight_decay=settings.weight_decay, val_fraction=settings.val_fraction, early_epochs=early)


def half_budget_accuracy(module, model, task, method: str, settings: Settings, seed: int) -> float:
    """``task``'s accuracy after a fine-tune of half the epochs (``epochs // 2``), with its own best-epoch
    choice: read off the full run ``module`` when it kept one (``sgd``: the first half of its epochs is
    that run, batch for batch), else (``adamw``, whose schedule anneals over the run's length) a fine-tune
    of its own from ``model``. ``module`` is left with its full-budget state."""
    if module.early is None:
        return run_finetune(model, task, method, settings, seed, settings.epochs // 2).accuracy(task)
    full = module.trained_state()
    module.load_trained_state(module.early[1])
    acc = module.accuracy(task)
    module.load_trained_state(full)
    return acc


def lr_search(enc, tasks, settings: Settings, grid: dict | None = None, seed: int = 0) -> list[dict]:
    """Per method of ``settings.methods``, learning rate of ``grid`` (None: ``LR_GRID``) and fine-tunable task, one fine-tune of
    the model of ``enc`` with the study's protocol (fine-tuning seed ``seed``): {method, lr, task,
    val_acc (the kept epoch's accuracy on the held-out part of the training images), best_epoch,
    acc_before}. Only validation accuracy is read: the evaluation images stay unseen."""
    from infogap.ablations.learn_forget.finetune import zero_shot_acc

    grid = LR_GRID if grid is None else grid
    tunable = [t for t in tasks if t.finetune]
    before = {t.name: zero_shot_acc(enc.model, t) for t in tunable}  # the model is never changed: once per task
    out = []
    for method in settings.methods:
        for lr in grid[method]:
            tried = dataclasses.replace(settings, lr={**settings.lr, method: lr})
            for task in tunable:
                module = run_finetune(enc.model, task, method, tried, seed)
                out.append({"method": method, "lr": lr, "task": task.name, "val_acc": max(module.val_accs), "best_epoch": module.best_epoch,
                            "acc_before": before[task.name]})
    return out


def choose_lr(rows: list[dict]) -> dict[str, float]:
    """Per method, the learning rate of ``lr_search`` rows with the highest mean validation accuracy over
    every (model, task) it was tried on; a tie (within 1e-9) goes to the smaller rate."""
    best = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        means = {}
        for r in rows:
            if r["method"] == method:
                means.setdefault(r["lr"], []).append(r["val_acc"])
        top = max(float(np.mean(v)) for v in means.values())
        best[method] = min(lr for lr, v in means.items() if float(np.mean(v)) >= top - 1e-9)
    return best


def points(result: dict) -> list[dict]:
    """One point per (method, fine-tuned task) of a model: the task's zero-shot measures (``zs_*``) and
    the outcomes, means over the fine-tuning seeds."""
    out = []
    for method in dict.fromkeys(f["method"] for f in result["finetunes"]):
        for task, zs in result["zero_shot"].items():
            sel = [f for f in result["finetunes"] if f["method"] == method and f["task"] == task]
            if sel:
                out.append({"method": method, "task": task, **{f"zs_{k}": v for k, v in zs.items()},
                            **{k: _finite_mean([f[k] for f in sel]) for k in (*OUTCOMES, "gain_half", "acc_after")}})
    return out


def _finite_mean(values: list[float]) -> float:
    """The mean of the values that are not NaN; NaN when none is (a linear probe's forgetting: its tower is frozen)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def run_learn_forget(run_dir: Path, settings: Settings) -> dict:
    """``measure`` of a finished synthetic run on the six factor tasks and the out-of-domain tasks,
    computed once from its last checkpoint and kept in ``learn_forget.json`` (recomputed when the
    settings change)."""
    from infogap.ablations.learn_forget.finetune import synthetic_tasks
    from infogap.train.embed import load_encoder

    def compute() -> dict:
        from infogap.train.checkpoints import last_checkpoint

        enc = load_encoder(checkpoint=str(last_checkpoint(run_dir)), seed=0)
        tasks = synthetic_tasks(enc, FACTOR_NAMES, settings.n_train, settings.n_eval, settings.prompts, settings.templates, settings.ood,
                                images=settings.task_images)
        return measure(enc, tasks, settings)

    return cached_json(Path(run_dir) / "learn_forget.json", {**settings_dict(settings), "measures": 3}, compute)  # 3: with NCTI and the authors' fine-tuning


def permute_prompts(task, q: float):
    """``task`` with the class prompts of its first round(q · classes) classes permuted cyclically (class
    c takes the prompts of class c + 1 among them; none move for fewer than 2): its images, labels and
    what they let a model learn stay the same, while its zero-shot accuracy falls and its IIMM (images
    close to what is now a wrong class's prompt) rises with q, by construction."""
    import torch

    m = int(round(q * len(task.classes)))
    order = list(range(len(task.classes)))
    if m >= 2:
        order[:m] = [(c + 1) % m for c in range(m)]
    return dataclasses.replace(task, name=f"{task.name}_q{q:g}", prompts=task.prompts[torch.tensor(order)])


def control_points(run_dir: Path, settings: Settings) -> dict:
    """The positive control of one run, kept in ``learn_forget_control.json``: per fraction q of
    ``control_fractions``, the zero-shot measures (IIMM, accuracy) of ``control_task`` with a fraction q
    of its class prompts permuted (``permute_prompts``), and the gain of a ``control_method`` fine-tune on
    that task (``finetune_seeds[0]``, the study's protocol). Expected before running, from the paper's relation
    (the gain rises with zero-shot IIMM): the gain rises with q and with IIMM."""
    from infogap.ablations.learn_forget.finetune import synthetic_tasks, zero_shot
    from infogap.train.embed import load_encoder

    def compute() -> dict:
        from infogap.train.checkpoints import last_checkpoint

        enc = load_encoder(checkpoint=str(last_checkpoint(run_dir)), seed=0)
        base = next(t for t in synthetic_tasks(enc, [settings.control_task], settings.n_train, settings.n_eval, settings.prompts,
                                               settings.templates, images=settings.task_images) if t.finetune)
        out = []
        for q in settings.control_fractions:
            task = permute_prompts(base, q)
            zs = zero_shot(enc.model, task)
            module = run_finetune(enc.model, task, settings.control_method, settings, settings.finetune_seeds[0])
            out.append({"q": q, **{f"zs_{k}": v for k, v in zs.items()}, "gain": module.accuracy(task) - zs["acc"]})
        return {"points": out}

    key = {k: v for k, v in settings_dict(settings).items() if k not in ("methods", "ood", "settled_margin", "control_k")}
    return cached_json(Path(run_dir) / "learn_forget_control.json", key, compute)


def control_claims(rows) -> list:
    """The positive control: within each control model, the slope of the gain on zero-shot IIMM across its
    permuted-prompt points (least squares over the fractions q), above 0 over the models (the unit,
    each counted once: ``paired_claim`` on the per-model slopes). Not tested without control points."""
    by_model: dict = {}
    for r in rows:
        if "control_q" in r:
            by_model.setdefault(model_of(r), []).append(r)
    slopes, text = {}, []
    for m, pts in sorted(by_model.items(), key=lambda kv: str(kv[0])):
        x, y = np.array([r["zs_iimm"] for r in pts]), np.array([r["gain"] for r in pts])
        name = "/".join(str(v) for v in m if v is not None)
        slopes[name] = float(np.polyfit(x, y, 1)[0]) if len(pts) >= 2 and np.ptp(x) > 0 else math.nan
        qs = sorted(pts, key=lambda r: r["control_q"])
        text.append(f"model {name}: " + ", ".join(f"q = {r['control_q']:g}: IIMM {r['zs_iimm']:.3f}, acc {r['zs_acc']:.3f}, gain {r['gain']:+.3f}" for r in qs))
    claim = "permuting the class prompts of a fraction q of the classes: the gain rises with zero-shot IIMM (the slope within each model > 0)"
    source = ("planted by construction: the permuted prompts lower zero-shot accuracy and raise IIMM while the images stay the same; "
              "the paper's relation predicts a positive slope")
    c = paired_claim(claim, slopes, "positive", "; ".join(text))
    return cite([dataclasses.replace(c, unit="models", detail=c.detail.replace(" seeds", " models").replace("seed ", "model "))], source, CONTROL)


# --- statistics ---------------------------------------------------------------------------------
def ols_fit(x, y, groups=None) -> dict:
    """OLS of y on x (``statsmodels``): slope, its standard error, 95 % interval and two-sided p-value, intercept, R², n;
    with ``groups`` (the model of each point) the interval and p are cluster-robust by group, with a
    t-distribution of (groups - 1) degrees of freedom: the points of one model are not independent,
    the models are the units (``clusters`` in the result). NaN fields when x or y has no spread, fewer
    than 3 points, or fewer than 2 groups; with 2 groups the slope and R² but no interval or p (a
    cluster-robust variance from 2 clusters is degenerate: it needs ``MIN_CLUSTERS``)."""
    import statsmodels.api as sm

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    g = None if groups is None else np.unique(np.asarray([str(v) for v in groups])[keep], return_inverse=True)[1]
    x, y = x[keep], y[keep]
    clusters = int(len(set(g.tolist()))) if g is not None else int(len(x))
    nan = {"slope": math.nan, "se": math.nan, "ci": (math.nan, math.nan), "p_value": math.nan, "intercept": math.nan, "r2": math.nan, "n": int(len(x)),
           "clusters": clusters}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0 or (g is not None and clusters < 2):
        return nan
    model = sm.OLS(y, sm.add_constant(x))
    fit = model.fit() if g is None else model.fit(cov_type="cluster", cov_kwds={"groups": g}, use_t=True)
    lo, hi = np.asarray(fit.conf_int())[1]
    p = float(fit.pvalues[1])
    if g is not None and clusters < MIN_CLUSTERS:
        lo = hi = p = math.nan
    return {"slope": float(fit.params[1]), "se": float(fit.bse[1]) if not math.isnan(p) else math.nan, "ci": (float(lo), float(hi)), "p_value": p,
            "intercept": float(fit.params[0]), "r2": float(fit.rsquared), "n": int(len(x)), "clusters": clusters}


def within_model_fit(x, y, groups) -> dict:
    """The slope of y on x within models: OLS with an intercept per model (the fixed-effects, or
    within, estimator; ``statsmodels`` ``y ~ x + C(model)``), so the tasks of one model are compared
    only with each other and a trend between models does not pass for one within them. (A random
    intercept would assume the models' levels independent of x; here IIMM is set by the pretraining,
    so it is not.) Returns {within_slope, within_ci, within_p, models}; NaN fields for fewer than 2
    models, no spread of x or of y within any model (a p-value of float noise otherwise), or no
    residual degrees of freedom."""
    import pandas as pd
    import statsmodels.formula.api as smf

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    g = np.asarray([str(v) for v in groups])
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y, g = x[keep], y[keep], g[keep]
    names = sorted(set(g))
    out = {"within_slope": math.nan, "within_ci": (math.nan, math.nan), "within_p": math.nan, "models": len(names)}
    if (len(names) < 2 or not any(np.ptp(x[g == m]) > 0 for m in names) or not any(np.ptp(y[g == m]) > 0 for m in names)
            or len(x) <= len(names) + 1):
        return out
    fit = smf.ols("y ~ x + C(model)", data=pd.DataFrame({"x": x, "y": y, "model": g})).fit()
    lo, hi = fit.conf_int().loc["x"]
    return {**out, "within_slope": float(fit.params["x"]), "within_ci": (float(lo), float(hi)), "within_p": float(fit.pvalues["x"])}


# what tells one model from another: a named model, or a run's axes and seed
MODEL_AXES = ("model", "k", "always_present", "model_size", "seed")


def model_of(row: dict) -> tuple:
    """Which model a point belongs to: ``model`` (``infogap analyze learn-forget``) or the run's axes (k, the factor always
    named, a model size) and seed."""
    return tuple(row.get(key) for key in MODEL_AXES)


def varying(rows: list[dict]) -> str:
    """What the models of ``rows`` differ in besides their seed (the run axes of ``MODEL_AXES`` that take
    more than one value; named models: "named models"), as words."""
    axes = [a for a in MODEL_AXES if a not in ("model", "seed") and len({r.get(a) for r in rows}) > 1]
    named = len({r.get("model") for r in rows} - {None}) > 1
    return ", ".join((["named models"] if named else []) + axes) or "their seed only"


def too_easy(row: dict) -> bool:
    """A (model, task) point whose zero-shot error is below ``MIN_ERROR``: its relative gain (gain / error)
    is a ratio of two numbers near 0, left out of the relative-gain fits and named in their claims."""
    return 1.0 - row.get("zs_acc", 0.0) < MIN_ERROR


def outcome_values(rows: list[dict], outcome: str) -> list[float]:
    """Each row's ``outcome``, NaN (left out of the fit) for a relative gain of a ``too_easy`` point."""
    return [math.nan if outcome == "relative_gain" and too_easy(r) else r[outcome] for r in rows]


def with_ncti(rows: list[dict]) -> list[dict]:
    """The rows with ``zs_ncti``: per task, the NCTI of each model from its parts (``transfer.ncti_scores``:
    normalised over the models of the rows, as the authors rank models on one dataset); rows without the
    parts, or that have it already, are left as they are."""
    from infogap.ablations.learn_forget.transfer import NCTI_PARTS, ncti_scores

    todo = [r for r in rows if "zs_ncti" not in r and all(f"zs_{k}" in r for k in NCTI_PARTS)]
    if not todo:
        return rows
    score = {}
    for task in dict.fromkeys(r["task"] for r in todo):
        parts = {model_of(r): {k: r[f"zs_{k}"] for k in NCTI_PARTS} for r in todo if r["task"] == task}
        score.update({(task, m): v for m, v in ncti_scores(parts).items()})
    ids = {id(r) for r in todo}
    return [{**r, "zs_ncti": score[(r["task"], model_of(r))]} if id(r) in ids else r for r in rows]


def fits(rows) -> list[dict]:
    """Every (outcome, predictor) fit per method and pooled ("all"), on the (model, task) points: the OLS
    over all points with intervals clustered by model (``ols_fit``) and the slope within models
    (``within_model_fit``)."""
    rows = with_ncti(rows)
    out = []
    for method in [*METHODS, "all"]:
        sel = [r for r in rows if method == "all" or r["method"] == method]
        if not sel:
            continue
        models = [model_of(r) for r in sel]
        for outcome in OUTCOMES:
            for predictor in PREDICTORS:
                if any(f"zs_{predictor}" not in r or outcome not in r for r in sel):
                    continue
                x, y = [r[f"zs_{predictor}"] for r in sel], outcome_values(sel, outcome)
                out.append({"method": method, "outcome": outcome, "predictor": predictor, **ols_fit(x, y, models),
                            **within_model_fit(x, y, models)})
    return out


def claim_better(outcome: str, name: str, against: str = "accuracy and gap") -> str:
    what = "the transferability estimators (H-score, TransRate, GBC, SFDA, NCTI)" if against == "estimators" else "zero-shot accuracy, RMG and L2M"
    return f"IIMM predicts {outcome} better than {what} ({name}; R² of IIMM above the best competitor's)"


PAPER_SOURCE = {"gain": "Niss et al. 2024: zero-shot IIMM predicts the gain of fine-tuning (linear fit, R² about 0.9)",
                "relative_gain": "Niss et al. 2024: zero-shot IIMM predicts the gain over zero-shot error (linear fit)",
                "forgetting": "Niss et al. 2024: zero-shot IIMM predicts the forgetting on other tasks (linear fit)",
                "forgetting_ood": "Niss et al. 2024: zero-shot IIMM predicts the forgetting on other datasets (here: held-out glyphs)"}


BEYOND_SOURCE = "Niss et al. 2024 compare IIMM with transferability estimators, not with zero-shot accuracy or the gap"
ESTIMATOR_SOURCE = ("Niss et al. 2024: IIMM against the transferability estimators (their SFDA, NCTI, TransRate, H-score, EMMS, GBC; "
                    "here all but EMMS)")


def r2_difference(x, competitor, y, groups, resamples: int = 2000, seed: int = 0) -> dict:
    """R²(y ~ x) minus R²(y ~ competitor) on the same points, with a cluster bootstrap over models (the
    unit; resampled with replacement, ``resamples`` times, vectorised: each resample weights a point by
    how often its model was drawn): the difference, its 90 % percentile interval, and the one-sided
    p-values that it is above 0 ((resamples at or below 0, plus 1) / (resamples + 1)) and below 0, and
    its bootstrap standard error ``se``. R² of a simple linear fit is the squared (weighted) Pearson
    correlation."""
    x, c, y = (np.asarray(v, dtype=float) for v in (x, competitor, y))
    keep = ~(np.isnan(x) | np.isnan(c) | np.isnan(y))
    x, c, y = x[keep], c[keep], y[keep]
    g = np.unique(np.asarray([str(v) for v in groups])[keep], return_inverse=True)[1]
    m = int(g.max()) + 1 if len(g) else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, m, size=(resamples, m))
    counts = np.zeros((resamples, m))  # (resamples, models): how often each model was drawn
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1)
    w = counts[:, g].astype(float)  # (resamples, points)

    def r2(a):
        sw = w.sum(1, keepdims=True)
        ma, my = (w * a).sum(1, keepdims=True) / sw, (w * y).sum(1, keepdims=True) / sw
        cov = (w * (a - ma) * (y - my)).sum(1)
        va, vy = (w * (a - ma) ** 2).sum(1), (w * (y - my) ** 2).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return cov ** 2 / (va * vy)

    diff = r2(x) - r2(c)
    diff = diff[~np.isnan(diff)]
    point = float(np.corrcoef(x, y)[0, 1] ** 2 - np.corrcoef(c, y)[0, 1] ** 2)
    if len(diff) == 0:
        return {"diff": point, "ci": (math.nan, math.nan), "p": math.nan, "p_opposite": math.nan, "se": math.nan, "models": m}
    lo, hi = np.quantile(diff, [0.05, 0.95])
    share = lambda hits: float((hits.sum() + 1) / (len(diff) + 1))  # noqa: E731  (the bootstrap p never 0: one resample is the data)
    return {"diff": point, "ci": (float(lo), float(hi)), "p": share(diff <= 0), "p_opposite": share(diff >= 0),
            "se": float(diff.std(ddof=1)) if len(diff) > 1 else math.nan, "models": m}


def fit_claims(rows) -> list:
    """Per method and pooled, for each outcome, the paper's claim: it rises with IIMM (OLS slope > 0,
    one-sided Wald t-tests with the standard error clustered by model and models - 1 degrees of freedom:
    ``coefficient_claim``; a poorly separated task has more to gain and pulls the model further); and
    the paper's comparison: IIMM explains it better than the best of the transferability estimators
    (H-score, TransRate, GBC, SFDA, NCTI: R² of IIMM minus R² of the estimator with the highest R²,
    cluster-bootstrapped over models: ``better_claim``). Beyond the paper: the same against zero-shot
    accuracy, RMG and L2M."""
    out = []
    rows = with_ncti(rows)
    table = fits(rows)
    for method in [*METHODS, "all"]:
        for outcome in OUTCOMES:
            by = {f["predictor"]: f for f in table if f["method"] == method and f["outcome"] == outcome}
            if not by:
                continue
            name = "pooled over methods" if method == "all" else method
            sel = [r for r in rows if method == "all" or r["method"] == method]
            claim = f"{outcome} rises with zero-shot IIMM ({name}; OLS slope > 0, clustered by model)"
            easy = [r["task"] for r in rows if (method == "all" or r["method"] == method) and too_easy(r)] if outcome == "relative_gain" else []
            left_out = (f"; left out: {len(easy)} points of the tasks {', '.join(sorted(set(easy)))} (zero-shot error < {MIN_ERROR:g})"
                        if easy else "")
            f = by.get("iimm")
            paper = PAPER_SOURCE[outcome]
            if f is None or math.isnan(f["slope"]):
                out += cite([Claim(claim, NOT_TESTED, f"{f['n'] if f else 0} (model, task) points; a fit needs 3 and spread in both "
                                                      f"{outcome} and IIMM (a frozen tower forgets nothing)", unit="models")], paper)
                continue
            if math.isnan(f["p_value"]):
                out += cite([Claim(claim, NOT_TESTED, f"{f['clusters']} models; a slope clustered by model needs {MIN_CLUSTERS}", unit="models")], paper)
                for against, (source, role) in COMPARISONS.items():
                    out += cite([Claim(claim_better(outcome, name, against), NOT_TESTED, f"{f['clusters']} models; the comparison needs "
                                       f"{MIN_CLUSTERS}", unit="models")], source, role)
                continue
            within = ("" if math.isnan(f["within_slope"]) else
                      f"; within models (an intercept per model, {f['models']} models): slope {f['within_slope']:+.3f}, "
                      f"95 % CI [{f['within_ci'][0]:+.3f}, {f['within_ci'][1]:+.3f}], p = {f['within_p']:.3g}")
            out += cite([coefficient_claim(claim, f["slope"], f["se"], "positive", f["clusters"], "models", df=f["clusters"] - 1,
                                           detail=f"R² = {f['r2']:.3f}, {f['n']} (model, task) points of {f['clusters']} models "
                                                  f"(differing in {varying(sel)}){within}{left_out}")],
                        paper)
            for against, (source, role) in COMPARISONS.items():
                out += cite([better_claim(outcome, name, against, f, by, sel)], source, role)
    return out


COMPARISONS = {"estimators": (ESTIMATOR_SOURCE, PAPER), "accuracy and gap": (BEYOND_SOURCE, BEYOND)}


def better_claim(outcome: str, name: str, against: str, f: dict, by: dict, sel: list[dict]) -> Claim:
    """IIMM's R² against the best R² of the ``against`` competitors (``COMPETITORS``), tested by the
    cluster bootstrap of the difference (``r2_difference``); not tested without a competitor with
    spread or with fewer than ``MIN_CLUSTERS`` models. Not shown: the smallest difference detectable at
    80 % power is taken as (z_0.95 + z_0.80) times the bootstrap standard error, and the observed one
    would need about models · (that / |difference|)² models (the error shrinking as 1 / sqrt(models))."""
    from scipy import stats

    claim = claim_better(outcome, name, against)
    others = {q: g for q, g in by.items() if q in COMPETITORS[against] and not math.isnan(g["r2"])}
    if not others:
        return Claim(claim, NOT_TESTED, "no competing predictor with spread", unit="models")
    best = max(others, key=lambda q: others[q]["r2"])
    d = r2_difference([r["zs_iimm"] for r in sel], [r[f"zs_{best}"] for r in sel], outcome_values(sel, outcome), [model_of(r) for r in sel])
    verdict = effect_verdict(d["p"], d["p_opposite"]) if d["models"] >= MIN_CLUSTERS else NOT_TESTED
    mde = float((stats.norm.ppf(0.95) + stats.norm.ppf(POWER)) * d["se"])
    needed = math.ceil(d["models"] * (mde / abs(d["diff"])) ** 2) if d["diff"] and math.isfinite(mde) else None
    detail = (f"R² IIMM {f['r2']:.3f}; " + ", ".join(f"{q} {g['r2']:.3f}" for q, g in others.items())
              + (f"; IIMM on evaluation images {by['iimm_eval']['r2']:.3f}" if "iimm_eval" in by and not math.isnan(by["iimm_eval"]["r2"]) else "")
              + f"; R² IIMM - R² {best} {d['diff']:+.3f}, 90 % cluster-bootstrap interval [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] "
                f"(2000 resamples of {d['models']} models), one-sided p = {d['p']:.3g} (opposite direction {d['p_opposite']:.3g})")
    if verdict == NOT_SHOWN:
        detail += power_text(mde, needed, "models", f"difference {d['diff']:+.3f}")
    return Claim(claim, verdict, detail, d["models"], d["diff"], d["ci"], d["p"], unit="models", mde=mde, needed=needed)


def settled_claims(rows, margin: float) -> list:
    """Per method, beyond the paper (a check of the budget): have the gains settled? The gain of the
    full-budget fine-tune minus that of a separate fine-tune at half the budget (each with its own
    schedule, so the half run is annealed too), averaged over a model's tasks (the unit: models), is
    zero to within ``margin`` (an equivalence claim: TOST on the models)."""
    out = []
    for method in METHODS:
        per_model: dict = {}
        for r in rows:
            if r["method"] == method and not math.isnan(r.get("gain_half", math.nan)):
                per_model.setdefault(model_of(r), []).append(r["gain"] - r["gain_half"])
        if not per_model:
            continue
        values = {"/".join(str(v) for v in m if v is not None): float(np.mean(d)) for m, d in per_model.items()}
        out += cite([equivalence_claim(f"the {method} gains have settled: the full-budget gain within ±{margin:g} of a half-budget fine-tune's",
                                       values, margin, unit="models")],
                    "a check of the fine-tuning budget (the paper fine-tunes for 10 epochs with the best validation checkpoint)", BEYOND)
    return out


def write_fits(table: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "outcome", "predictor", "slope", "se", "ci", "p_value", "intercept", "r2", "n",
                                               "clusters", "within_slope", "within_ci", "within_p", "models"])
        writer.writeheader()
        writer.writerows(fits(table))
    return path


def scatter(table: list[dict], path: Path, colour_by: str) -> Path:
    """Each outcome (rows) against zero-shot IIMM, one panel per method (columns), points coloured by
    ``colour_by`` (k, or the model), with the OLS line and its R²."""
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
            sel = [r for r in table if r["method"] == method and not math.isnan(r.get(outcome, math.nan))]
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
    parallel_rows = True  # rows fine-tunes each run on every task

    def rows(self, run, record):
        """One row per (method, task) of a run: its final metrics, the task's zero-shot measures and the gain
        and forgetting (``points``)."""
        out = [{"method": p["method"], "task": p["task"], **record["metrics"], **p} for p in points(run_learn_forget(run.dir, self.settings))]
        if run.axes.get("k") == self.settings.control_k:
            out += [{"method": f"control_{self.settings.control_method}", "task": f"{self.settings.control_task}_q{p['q']:g}", "control_q": p["q"],
                     **record["metrics"], **p} for p in control_points(run.dir, self.settings)["points"]]
        return out

    def claims(self, rows, design):
        """The positive control (``control_claims``) on its own rows, then the paper's fits and the
        budget check on the rest."""
        rest = [r for r in rows if "control_q" not in r]
        return control_claims(rows) + fit_claims(rest) + settled_claims(rest, self.settings.settled_margin)

    def figures(self, ablation, runs, results):
        """Gain and forgetting against zero-shot IIMM per method, points coloured by k (``scatter``), and the
        table of every fit (``fits.csv``)."""
        table = [r for r in read_summary(results, ("method", "task")) if r["method"] in METHODS]  # not the positive control's rows
        if not table or "zs_iimm" not in table[0]:
            return []
        write_fits(table, results / "fits.csv")
        return [scatter(table, results / "learn_forget_vs_iimm.png", "k")]
