"""Ghate et al., NAACL 2025, made causal (``infogap ablate bias``, docs/results/bias.md): does the training data predict the intrinsic bias? Plant object-attribute
co-occurrences at rate p (``data.cooccurrence``), train (``tiny`` and ``small``), and score the
embedding association tests of ``configs/bias/synthetic_tests.yaml`` (two planted tests, two controls)
in the four modality combinations (``infogap.ablations.bias.analyze``).

Report, as the published design: effect size d against p, by a mixed-effects model with crossed random
intercepts per (test, modality combination) and per trained run, and by plain OLS beside it
(``statsmodels``; model size as a fixed effect), separately for the planted and the control tests; and Pearson r between d and
downstream zero-shot accuracy per test (``scipy.stats.pearsonr``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infogap.ablations.kit.claims import BEYOND, CONTROL, NOT_SHOWN, NOT_TESTED, Claim, cite, coefficient_claim, correlation_claim, interval_claim, paired_claim
from infogap.ablations.kit.results import cached_json, save_figure
from infogap.ablations.kit.study import ROOT, Study, settings_dict
from infogap.data.factors import FACTOR_NAMES

AXIS = "cooccurrence_p"


@dataclass(frozen=True)
class Settings:
    tests: str = "configs/bias/synthetic_tests.yaml"  # the association tests (relative to the repository / package)
    planted: tuple[str, ...] = ("objects_colour", "objects_thickness")  # the tests whose associations the ablation plants
    permutations: int = 10_000  # random partitions per test (p resolution 1e-4; the exact test when fewer exist)
    effect: float = 0.2  # |d| >= effect counts as an effect (Ghate et al.'s threshold for an effect)
    control_margin: float = 0.2  # "does not move with p": the control slope's 90 % interval within +- this (d per unit p)
    size_margin: float = 0.2  # "model size does not change d": the size coefficient's 90 % interval within +- this


def tests_path(settings: Settings) -> Path:
    path = Path(settings.tests)
    return path if path.is_absolute() else ROOT / path


def run_eat(run_dir: Path, settings: Settings) -> list[dict]:
    """The EAT rows of a finished run, computed once from its last checkpoint and kept in ``eat.json``
    (recomputed when the settings or the tests file changed)."""
    from infogap.ablations.bias.analyze import load_encoder, load_tests, score_tests

    tests = tests_path(settings)

    def compute() -> dict:
        from infogap.train.checkpoints import last_checkpoint

        enc = load_encoder(checkpoint=str(last_checkpoint(run_dir)), seed=0)  # the same sets for every run
        return {"results": score_tests(enc, load_tests(tests), settings.permutations, seed=0)}

    key = {**settings_dict(settings), "tests_sha256": hashlib.sha256(tests.read_bytes()).hexdigest()}
    return cached_json(Path(run_dir) / "eat.json", key, compute)["results"]


# --- statistics ---------------------------------------------------------------------------------
def _frame(rows, tests):
    import pandas as pd

    df = pd.DataFrame([r for r in rows if r["test"] in tests and not math.isnan(r["effect_size"])])
    if len(df):
        df["p"] = df[AXIS].astype(float)
        df["group"] = df["test"] + ":" + df["modality"]
        df["run"] = df["model_size"].astype(str) + ":" + df[AXIS].astype(str) + ":" + df["seed"].astype(str)
    return df


def slope_fits(rows, tests) -> dict:
    """d ~ p (+ model size when two sizes are present): OLS, and a mixed model with crossed random
    intercepts per (test, modality combination), as the published design, and per training run (the
    unit of the design: the 16 effect sizes of one trained model are not independent, and without the
    run intercept its own noise would count as evidence). {fit: (slope, (lo, hi) 95 %, p_value,
    size_coef, size_p, (lo, hi) 90 % of the slope, (lo, hi) 90 % of the size coefficient, the slope's
    standard error)}, ``n``
    effect sizes and ``runs``; {} when p takes fewer than two values."""
    import warnings

    import statsmodels.formula.api as smf

    df = _frame(rows, tests)
    if len(df) == 0 or df["p"].nunique() < 2:
        return {}
    sizes = "model_size" in df and df["model_size"].nunique() > 1
    formula = "effect_size ~ p" + (" + C(model_size)" if sizes else "")
    out = {}
    ols = smf.ols(formula, df).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes on small data; the fit is reported as it is
        vc = {"test_modality": "0 + C(group)", "run": "0 + C(run)"}
        mixed = (smf.mixedlm(formula, df, groups=np.ones(len(df)), vc_formula=vc).fit()
                 if df["group"].nunique() > 1 and df["run"].nunique() > 1 else None)
    for name, fit in (("ols", ols), ("mixed", mixed)):
        if fit is None:
            continue
        lo, hi = fit.conf_int().loc["p"]
        lo90, hi90 = fit.conf_int(alpha=0.10).loc["p"]
        size_term = next((t for t in fit.params.index if t.startswith("C(model_size)")), None)
        size90 = tuple(float(v) for v in fit.conf_int(alpha=0.10).loc[size_term]) if size_term else (float("nan"), float("nan"))
        out[name] = (float(fit.params["p"]), (float(lo), float(hi)), float(fit.pvalues["p"]),
                     float(fit.params[size_term]) if size_term else float("nan"),
                     float(fit.pvalues[size_term]) if size_term else float("nan"), (float(lo90), float(hi90)), size90,
                     float(fit.bse["p"]))
    out["n"] = len(df)
    out["runs"] = int(df["run"].nunique())
    return out


def _fit_text(fits) -> str:
    parts = []
    for name in ("mixed", "ols"):
        if name in fits:
            b, (lo, hi), p, s, sp = fits[name][:5]
            parts.append(f"{name}: slope {b:+.3f} per unit p, 95 % CI [{lo:+.3f}, {hi:+.3f}], p = {p:.3g}"
                         + ("" if math.isnan(s) else f"; small - tiny {s:+.3f} (p = {sp:.3g})"))
    return "; ".join(parts) + f"; {fits['n']} effect sizes of {fits['runs']} runs (the unit: a random intercept per run)"


def run_points(rows, test: str) -> list[tuple[float, float]]:
    """One (d, accuracy) point per trained run for ``test``: the run's mean effect size over the modality
    combinations and its mean zero-shot accuracy (the unit of the correlation is the run)."""
    by_run: dict[tuple, list] = {}
    for r in rows:
        if r["test"] == test and not math.isnan(r["effect_size"]) and not math.isnan(r.get("zeroshot_mean_acc", math.nan)):
            key = tuple((k, r.get(k)) for k in ("model_size", AXIS, "k", "seed"))
            by_run.setdefault(key, []).append(r)
    return [(float(np.mean([r["effect_size"] for r in rs])), rs[0]["zeroshot_mean_acc"]) for rs in by_run.values()]


class Bias(Study):
    Settings = Settings
    extra_axes = ("test", "modality")

    def rows(self, run, record):
        metrics = dict(record["metrics"])
        accs = [metrics[f"zeroshot_{f}_acc"] for f in FACTOR_NAMES if f"zeroshot_{f}_acc" in metrics]
        metrics["zeroshot_mean_acc"] = float(np.mean(accs)) if accs else float("nan")
        return [{"test": r["test"], "modality": r["modality"], **metrics, "effect_size": r["effect_size"], "p_value": r["p_value"]}
                for r in run_eat(run.dir, self.settings)]

    def claims(self, rows, design):
        """First the positive control: at the largest p the planted associations are effects (mean d over
        planted tests and modalities minus 0.2 above 0, paired over seeds). Then the paper's findings:
        planted tests: d rises with p (the mixed model's slope, one-sided Wald tests: ``coefficient_claim``);
        model size does not change d (its coefficient's 90 % interval within +-``size_margin``); per test,
        d correlates with mean zero-shot accuracy over runs (Pearson r > 0, one point per run: its mean d
        over the modality combinations). Beyond the paper: control tests (nothing planted) do not move
        with p (the slope's 90 % interval within +-``control_margin``)."""
        out = []
        seeds = len({r["seed"] for r in rows})
        controls = tuple(sorted({r["test"] for r in rows} - set(self.settings.planted)))
        planted_fit, control_fit = slope_fits(rows, self.settings.planted), slope_fits(rows, controls)
        one_seed = "; 1 seed: the runs of one seed share their initialisation, no test"
        top = max(design[AXIS])
        per_seed: dict[int, list[float]] = {}
        for r in rows:
            if r.get(AXIS) == top and r["test"] in self.settings.planted and not math.isnan(r["effect_size"]):
                per_seed.setdefault(r["seed"], []).append(r["effect_size"])
        out += cite([paired_claim(f"at p = {top} the planted associations are effects (mean d over planted tests and modalities above {self.settings.effect})",
                                  {s: float(np.mean(v)) - self.settings.effect for s, v in per_seed.items()}, "positive",
                                  "; ".join(f"seed {s}: mean d {np.mean(v):+.3f}" for s, v in sorted(per_seed.items())))],
                    f"planted by construction: objects co-occur with one attribute value at rate p = {top}; Ghate et al.'s effect threshold |d| >= {self.settings.effect}",
                    CONTROL)
        source = "Ghate et al. 2025: the pretraining data predicts the bias (mixed-effects regression of d)"
        claim = "planted associations: the effect size d rises with the co-occurrence rate p (mixed model slope > 0)"
        if "mixed" in planted_fit and seeds > 1:
            b, se = planted_fit["mixed"][0], planted_fit["mixed"][7]
            out += cite([coefficient_claim(claim, b, se, "positive", planted_fit["runs"], "runs", detail=_fit_text(planted_fit))], source)
        elif "mixed" in planted_fit:
            out += cite([Claim(claim, NOT_SHOWN, _fit_text(planted_fit) + one_seed, 1, planted_fit["mixed"][0], unit="runs")], source)
        else:
            out += cite([Claim(claim, NOT_TESTED, "fewer than two co-occurrence rates, runs or test groups")], source)
        margin = self.settings.size_margin
        claim = f"model size does not change the planted effect sizes (small - tiny within ±{margin:g})"
        source = "Ghate et al. 2025: model size is not a significant factor of the bias"
        if "mixed" in planted_fit and not math.isnan(planted_fit["mixed"][3]) and seeds > 1:
            s, size90 = planted_fit["mixed"][3], planted_fit["mixed"][6]
            out += cite([interval_claim(claim, s, size90, margin, "mixed model coefficient of small vs tiny", planted_fit["runs"], "runs")], source)
        else:
            out += cite([Claim(claim, NOT_TESTED, "needs both model sizes and at least 2 seeds", kind="equivalence", margin=margin)], source)
        for test in sorted({r["test"] for r in rows}):
            pairs = run_points(rows, test)
            d, acc = np.array(pairs).T if len(pairs) else (np.array([]), np.array([]))
            claim = f"{test}: d correlates positively with mean zero-shot accuracy (Pearson over runs)"
            detail = "one point per run: its mean d over the modality combinations" + ("" if seeds > 1 else one_seed)
            c = correlation_claim(claim, d, acc, "positive", "runs", detail)
            if seeds == 1 and c.verdict != NOT_TESTED:
                c = dataclasses.replace(c, verdict=NOT_SHOWN)
            out += cite([c], "Ghate et al. 2025: the bias correlates with downstream performance (r 0.3-0.8 for several test categories)")
        margin = self.settings.control_margin
        claim = f"control tests (nothing planted): d does not move with p (mixed model slope within ±{margin:g} per unit p)"
        source = "a negative control of this causal design (the paper plants nothing)"
        if "mixed" in control_fit and seeds > 1:
            b, _, _, _, _, ci90, _, _ = control_fit["mixed"]
            out += cite([interval_claim(claim, b, ci90, margin, _fit_text(control_fit), control_fit["runs"], "runs")], source, BEYOND)
        else:
            out += cite([Claim(claim, NOT_TESTED, "needs control tests, two co-occurrence rates and at least 2 seeds", kind="equivalence",
                               margin=margin)], source, BEYOND)
        return out

    def figures(self, ablation, runs, results):
        """d vs p per modality combination (one line per test and model size, mean over seeds with its
        spread), and d vs mean zero-shot accuracy."""
        import csv

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from infogap.ablations.bias.analyze import COMBINATIONS

        with open(results / "summary.csv") as f:
            table = [r for r in csv.DictReader(f)]
        if not table:
            return []
        ks = sorted({r.get("k", "") for r in table})  # one row of panels per caption setting (--sweep data.k=...)
        fig, axs = plt.subplots(len(ks), len(COMBINATIONS), figsize=(4.2 * len(COMBINATIONS), 3.4 * len(ks)), sharey=True, squeeze=False)
        tests = sorted({r["test"] for r in table})
        sizes = sorted({r["model_size"] for r in table})
        for row, k in zip(axs, ks):
            for ax, combo in zip(row, COMBINATIONS):
                for i, test in enumerate(tests):
                    for j, size in enumerate(sizes):
                        sel = [r for r in table if r["modality"] == combo and r["test"] == test and r["model_size"] == size and r.get("k", "") == k]
                        ps = sorted({float(r[AXIS]) for r in sel})
                        ds = [[float(r["effect_size"]) for r in sel if float(r[AXIS]) == p] for p in ps]
                        ax.errorbar(ps, [np.mean(d) for d in ds], yerr=[np.std(d) for d in ds], color=f"C{i}", marker="o", ms=3,
                                    ls="-" if j == 0 else "--", label=f"{test} ({size})", capsize=2)
                ax.axhline(0, color="k", lw=0.5)
                ax.set_title(f"{combo} (targets-attributes)" + (f", k={k}" if k != "" else ""), fontsize=9)
                ax.set_xlabel("co-occurrence rate p")
                ax.grid(alpha=0.3)
            row[0].set_ylabel("EAT effect size d")
        axs[0][-1].legend(fontsize=6)
        first = save_figure(fig, results / "bias_effect_vs_p.png")
        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        for i, test in enumerate(tests):
            sel = [r for r in table if r["test"] == test]
            ax.scatter([float(r["zeroshot_mean_acc"]) for r in sel], [float(r["effect_size"]) for r in sel], s=8, color=f"C{i}", label=test)
        ax.set_xlabel("mean zero-shot accuracy")
        ax.set_ylabel("EAT effect size d")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        return [first, save_figure(fig, results / "bias_effect_vs_accuracy.png")]
