"""Aggregation: the finished runs of an ablation's report stage become ``summary.csv`` (one row per
run and study row), ``report.md`` (means with 95 % t-intervals over seeds, the claims with their
statistics, failed runs), ``claims.json`` (the claims as data, for ``infogap reproduce``) and figures
(each metric against the x axis)."""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np

from infogap.ablations.kit.claims import CONTROL, NOT_TESTED, apply_controls, mean_ci
from infogap.ablations.kit.results import save_figure
from infogap.ablations.kit.study import Ablation, Run, settings_dict
from infogap.ablations.kit.parallel import parallel_map
from infogap.ablations.runner.spec import design
from infogap.data.factors import ATTRIBUTE_FACTORS
from infogap.train.loggers import write_text_atomic


def run_rows(ablation: Ablation, run: Run) -> list[dict]:
    """The summary rows of a finished run: its axes, seed and final metrics. A hook module's
    ``rows(run, record)`` may return several rows, with its ``EXTRA_AXES`` as extra keys."""
    record = run.record()
    if record is None:
        raise ValueError(f"{run.dir / 'metrics.json'}: not a whole metrics record (the run is unfinished)")
    rows = ablation.study.rows(run, record)
    out = []
    for metrics in rows:
        clash = sorted(set(metrics) & (set(run.axes) | {"seed"}))
        if clash:  # a hook's own metric named like an axis: never let it overwrite the axis value
            raise ValueError(f"{run.name}: metric(s) {', '.join(clash)} have the name of an axis; rename the axis")
        row = {**run.axes, "seed": run.seed}
        row.update(metrics)
        accs = [row[f"zeroshot_{f}_acc"] for f in ATTRIBUTE_FACTORS if f"zeroshot_{f}_acc" in row]
        if accs:
            row["attr_acc_mean"] = float(np.mean(accs))
        out.append(row)
    return out


def finished_rows(ablation: Ablation, runs: list[Run], jobs: int = 1) -> list[dict]:
    """``run_rows`` of every finished run, in the runs' order. A study that analyses each run in
    ``rows`` (``parallel_rows``) gets them from ``jobs`` worker processes at once (``parallel_map``:
    spawned, each with its share of the cores as torch threads); the analyses keep their results
    beside each run, so the workers share nothing."""
    finished = [r for r in runs if r.finished]
    per_run = parallel_map(run_rows, finished, jobs if ablation.study.parallel_rows else 1, ablation)
    return [row for rows in per_run for row in rows]


def aggregate(ablation: Ablation, runs: list[Run], out: Path, failed: Optional[dict[str, str]] = None, jobs: int = 1) -> dict:
    """Write summary.csv, report.md and figures for the finished runs of the report stage (``jobs``:
    worker processes for a study's per-run analyses, ``finished_rows``)."""
    results = out / ablation.name
    results.mkdir(parents=True, exist_ok=True)
    for stale in (results / "summary.csv", results / "report.md", results / "claims.json", results / TIMINGS):  # never an older table beside newer runs
        stale.unlink(missing_ok=True)
    reported = [r for r in runs if r.stage == ablation.report_stage]
    clock = time.perf_counter()
    rows = finished_rows(ablation, reported, jobs)
    timings = {"analyses_s": time.perf_counter() - clock}
    failed = dict(failed or {})
    for r in runs:
        if not r.finished and r.name not in failed:
            if r.failure:
                failed[r.name] = r.failure
            elif (r.dir / "metrics.json").exists():
                failed[r.name] = f"{r.dir / 'metrics.json'} is not a whole metrics record: the run counts as unfinished (launch it again to resume it)"
    study = ablation.study
    clock = time.perf_counter()
    rows += study.extra_rows(ablation, [r for r in reported if r.finished], results, jobs=jobs)  # rows of no run: baselines
    timings["baselines_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    axes = list(dict.fromkeys([k for r in reported for k in r.axes] + list(study.extra_axes)))
    metric_cols = sorted({k for row in rows for k in row if k not in axes and k != "seed"})
    columns = axes + ["seed"] + metric_cols
    with open(results / "summary.csv.tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    os.replace(results / "summary.csv.tmp", results / "summary.csv")
    table_cols = [c for c in (ablation.table or metric_cols) if c in metric_cols]
    groups = _group(rows, axes)
    report = _report_markdown(ablation, axes, table_cols, groups, failed, sum(r.finished for r in reported), len(reported))
    figures = _figures(ablation, axes, groups, results, rows)
    figures += study.figures(ablation, runs, results)
    claims = run_claims(ablation, rows)
    findings = [c for c in claims if c.kind != "sanity"]
    checks = [c for c in claims if c.kind == "sanity"]
    if findings:
        report += ("\n## Claims\n\n" + CLAIMS_NOTE + "\n\n" + "\n".join(f"- {c.line()}" for c in findings) + "\n")
    if checks:
        report += ("\n## Sanity checks\n\n" + SANITY_NOTE + "\n\n" + "\n".join(f"- {c.line()}" for c in checks) + "\n")
    if figures:
        report += "\n## Figures\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in figures) + "\n"
    write_text_atomic(results / "report.md", report)
    write_text_atomic(results / "claims.json", json.dumps([dataclasses.asdict(c) for c in claims], indent=1) + "\n")
    timings["report_s"] = time.perf_counter() - clock
    return {"rows": rows, "axes": axes, "table": table_cols, "groups": groups, "figures": figures, "failed": failed, "claims": claims,
            "summary": results / "summary.csv", "report": results / "report.md", "timings": timings}


TIMINGS = "timings.json"  # where an ablation's wall time went: written by ``infogap ablate`` (``write_timings``), read by reproduce
TIMING_PARTS = (("training_s", "training"), ("analyses_s", "per-run analyses"), ("baselines_s", "baselines"),
                ("report_s", "claims, tables and figures"))


def write_timings(results: Path, training_s: Optional[float], timings: dict) -> None:
    """``TIMINGS`` under an ablation's results folder: seconds of training (None when this invocation
    launched nothing), of the per-run analyses (``finished_rows``: what their caches did not already hold),
    of the study's baselines (``extra_rows``) and of its claims, tables and figures."""
    record = {"training_s": None if training_s is None else round(training_s, 1), **{k: round(v, 1) for k, v in timings.items()}}
    write_text_atomic(results / TIMINGS, json.dumps(record, indent=1) + "\n")


def timings_line(timings: dict) -> str:
    """One sentence of where an ablation's wall time went (``TIMINGS``), in minutes."""
    parts = [f"{name} {timings[key] / 60:.1f} min" for key, name in TIMING_PARTS if timings.get(key) is not None]
    if "pool_runs" in timings:  # infogap reproduce trained the plan's runs in one pool
        parts.insert(0, f"training {timings['pool_runs']} runs in the plan's pool, {timings['pool_run_s'] / 60:.1f} run-min")
    elif timings.get("training_s") is None:
        parts.insert(0, "no training (every run had finished before this aggregation)")
    return "Wall time: " + ", ".join(parts) + "."


CLAIMS_NOTE = ("A claim of an effect is tested over its units (seeds unless it names others) by one-sided tests at 0.05 in "
               "both directions: it holds when the test in the claimed direction rejects, is contradicted when the test in the "
               "opposite direction rejects, and is otherwise not shown, with the smallest effect the design detects at 80 % "
               "power and the units the observed effect would need. Intervals beside verdicts are two-sided 90 % intervals, "
               "the ones that match the tests. A claim of no effect states a margin and holds only when its 90 % interval lies "
               "inside it (TOST); an interval wholly outside contradicts it, one that straddles the margin is inconclusive. A "
               "claim with no unit that has every arm it compares is not tested. The study's positive control (an effect "
               "planted at a known size) comes first; when it does not hold, the other claims are not testable here.")
SANITY_NOTE = ("These hold for any data by construction (e.g. shifting one modality by the mean difference equalises the "
               "centroids): they check that the analysis ran as designed and are not findings.")


def run_claims(ablation: Ablation, rows: list[dict]) -> list:
    """The study's ``claims(rows, design)``; with ``--sweep`` axes, once per point of them, on
    that point's rows (the claim names the point), then its ``sweep_claims`` over the whole design;
    positive controls first, and every other claim of a point "not testable here" when that point's
    control did not hold (``claims.apply_controls``; a claim across the points, against every control)."""
    study = ablation.study
    full = design(ablation)
    own = {a: v for a, v in full.items() if a not in ablation.swept}
    controls, rest = [], []
    for combo in itertools.product(*(full[a] for a in ablation.swept)):
        point = dict(zip(ablation.swept, combo))
        claims = study.claims([r for r in rows if all(r.get(a) == v for a, v in point.items())], own)
        for claim in claims:
            if point:
                claim.claim += " [" + ", ".join(f"{a}={v}" for a, v in point.items()) + "]"
        checked = apply_controls(claims)  # each point's claims against that point's controls
        controls += [c for c in checked if c.role == CONTROL]
        rest += [c for c in checked if c.role != CONTROL]
    if ablation.swept:
        rest += apply_controls(study.sweep_claims(rows, full), controls)  # claims across the points: against every control
    return controls + rest


def untested(claims) -> list:
    return [c for c in claims if c.verdict == NOT_TESTED]


def _group(rows: list[dict], axes: list[str]) -> list[tuple[tuple, list[dict]]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(a) for a in axes), []).append(row)
    return sorted(groups.items(), key=lambda kv: [(str(type(v)), v) for v in kv[0]])


def format_cell(values: list) -> str:
    """The mean over seeds, and its 95 % t-interval when there are several (``claims.mean_ci``)."""
    m, (lo, hi) = mean_ci(values, 0.95)
    return f"{m:.3f}" if math.isnan(lo) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def format_table(axes: list[str], cols: list[str], groups) -> str:
    """A markdown table of means over seeds with 95 % t-intervals, one row per point of the swept axes."""
    head = "| " + " | ".join(axes + ["seeds"] + cols) + " |"
    sep = "|" + "|".join(["---"] * (len(axes) + 1 + len(cols))) + "|"
    lines = [head, sep]
    for key, members in groups:
        cells = [str(v) for v in key] + [str(len(members))] + [format_cell([r.get(c) for r in members]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_markdown(ablation: Ablation, axes, cols, groups, failed, n_finished: int, n_runs: int) -> str:
    seeds = sorted({r["seed"] for _, members in groups for r in members})
    text = [f"# Ablation `{ablation.name}`", ""]
    if ablation.source:
        text += [f"Config: `{ablation.source.name}`; base: `{ablation.base_config.name}`; seeds: {', '.join(map(str, seeds)) or 'none'}; "
                 f"runs finished: {n_finished} of {n_runs} (report stage `{ablation.report_stage}`).", ""]
    settings = settings_dict(ablation.study.settings)
    if settings:
        text += ["Study settings: " + ", ".join(f"`{k}` = {v}" for k, v in settings.items()) + ".", ""]
    text += ["Means over seeds, with 95 % t-intervals [low, high] (scipy.stats.t, n - 1 degrees of freedom) where there are "
             "several seeds.", "", format_table(axes, cols, groups), ""]
    if failed:
        text += ["## Failed runs", ""] + [f"- `{name}`: {why}" for name, why in failed.items()] + [""]
    return "\n".join(text)


def _figures(ablation: Ablation, axes: list[str], groups, results: Path, rows: list[dict]) -> list[Path]:
    """One PNG per figure metric: the metric against the x axis, one line per value of the other axes,
    error bars = 95 % t-interval over seeds."""
    x = ablation.x if ablation.x in axes else (axes[0] if axes else None)
    metrics = [m for m in ablation.figures if rows and any(m in r for r in rows)]
    if x is None or not metrics:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [a for a in axes if a != x]
    lines: dict[tuple, list[tuple]] = {}
    for key, members in groups:
        point = dict(zip(axes, key))
        lines.setdefault(tuple(point[a] for a in others), []).append((point[x], members))
    cols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig, axs = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False)
    for ax, metric in zip(axs.flat, metrics):
        for other, pts in lines.items():
            xs = [p[0] for p in pts]
            stats = [mean_ci([r.get(metric) for r in p[1]], 0.95) for p in pts]
            label = ", ".join(f"{a}={v}" for a, v in zip(others, other)) or None
            categorical = not all(isinstance(v, (int, float)) for v in xs)
            pos = list(range(len(xs))) if categorical else xs
            half = [0.0 if math.isnan(hi) else hi - m for m, (_, hi) in stats]
            ax.errorbar(pos, [m for m, _ in stats], yerr=half, marker="o", capsize=3, label=label)
            if categorical:
                ax.set_xticks(pos, [str(v) for v in xs])
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    for ax in list(axs.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"{ablation.name}: metrics vs {x} (error bars: 95 % t-interval over seeds)", fontsize=11)
    return [save_figure(fig, results / f"{ablation.name}_metrics.png")]
