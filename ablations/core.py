"""Ablations: a YAML in ``configs/ablations/`` says what varies; this module expands it into runs,
launches them, and aggregates the finished runs into ``summary.csv``, ``report.md`` and figures.

An ablation YAML::

    name: imbalance
    module: infogap.ablations.imbalance        # analysis hooks (optional): rows(), extra_rows(), claims(), figures()
    base_config: configs/synthetic.yaml
    seeds: [0]
    x: k                               # the axis on the x of the figures
    table: [rmg, l2m, moad_image, ...] # columns of the report table
    stages:
      - name: train
        axes: {k: {key: data.k, values: [0, 1, 2, 3, 4, 5]}}
        overrides: {trainer.max_steps: 600}
    report: train                      # the stage whose runs are aggregated (default: the last)

A later stage may refer to the run directory of an earlier stage of the same seed as ``{stage}``
(e.g. ``model.pretrained: "{base}/checkpoints/last.ckpt"``). Every run gets ``seed_everything`` and
``data.seed`` set to its seed. The training loop knows nothing of ablations: a run is an
``infogap fit`` with overrides.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import importlib
import itertools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

from infogap.ablations.analysis import NOT_TESTED, mean_ci, save_figure
from infogap.data.factors import ATTRIBUTE_FACTORS, FACTOR_NAMES

# configs/ and slurm/ sit beside the code folders: in the repository (an editable install) and inside
# the installed package (a wheel ships them as infogap/configs and infogap/slurm)
ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs" / "ablations"
DERIVED = ("attr_acc_mean",)


def metric_names() -> set[str]:
    """Names a run's metrics take in ``summary.csv``: every key of the metric suite for the synthetic
    factors, what the evaluation callback adds (temperature, logit scale) and the derived columns. An
    axis may not take one of them (its values would be overwritten)."""
    from infogap.train.evaluation import CALLBACK_KEYS
    from infogap.train.metrics import metric_keys

    return set(metric_keys(FACTOR_NAMES, class_factors=FACTOR_NAMES)) | set(CALLBACK_KEYS) | set(DERIVED) | {"seed"}


@dataclass
class Run:
    stage: str
    axes: dict[str, Any]
    seed: int
    overrides: dict[str, Any]
    dir: Path

    @property
    def name(self) -> str:
        parts = [f"{k}={v}" for k, v in self.axes.items()] + [f"seed={self.seed}"]
        return "__".join([self.stage] + parts)

    @property
    def finished(self) -> bool:
        return (self.dir / "metrics.json").is_file()

    def label(self) -> str:
        return " ".join([self.stage] + [f"{k}={v}" for k, v in self.axes.items()] + [f"seed={self.seed}"])

    @property
    def failure(self) -> Optional[str]:
        """Why the last attempt failed (its ``FAILED`` file, which the aggregation reports), or None."""
        path = self.dir / "FAILED"
        return path.read_text().strip() if path.is_file() else None

    def record_failure(self, why: Optional[str]) -> None:
        """Write ``FAILED`` with ``why``, or (None: the run succeeded) remove it."""
        path = self.dir / "FAILED"
        if why is None:
            path.unlink(missing_ok=True)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            path.write_text(why + "\n")


@dataclass
class Ablation:
    name: str
    base_config: Path
    stages: list[dict]
    seeds: list[int] = field(default_factory=lambda: [0])
    x: Optional[str] = None
    table: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    report: Optional[str] = None
    module: Optional[str] = None
    source: Optional[Path] = None
    slurm: dict = field(default_factory=dict)  # sbatch resources: partition, account, time, nodes, gpus_per_node, ...
    swept: tuple[str, ...] = ()  # axes added by --sweep (add_sweep)

    @property
    def report_stage(self) -> str:
        return self.report or self.stages[-1]["name"]

    def hooks(self):
        return importlib.import_module(self.module) if self.module else None


def available() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_ablation(name: str, sweep: tuple[str, ...] = ()) -> Ablation:
    """An ablation by name (``configs/ablations/NAME.yaml``) or by path to a YAML file, with the extra
    axes of ``sweep`` (see ``add_sweep``)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"ablation {name!r} not found ({path}); available: {', '.join(available())}")
    spec = yaml.safe_load(path.read_text()) or {}
    known = {"name", "module", "base_config", "seeds", "x", "table", "figures", "stages", "report", "description", "slurm"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    if not spec.get("stages"):
        raise ValueError(f"{path}: needs at least one stage under 'stages'")
    for st in spec["stages"]:
        if "name" not in st:
            raise ValueError(f"{path}: every stage needs a 'name'")
        for axis, ax in (st.get("axes") or {}).items():
            if not isinstance(ax, dict) or "values" not in ax or "key" not in ax:
                raise ValueError(f"{path}: axis {axis!r} of stage {st['name']!r} needs 'key' and 'values'")
            check_axis_name(axis, f"{path}: stage {st['name']!r}")
    base = Path(spec.get("base_config", "configs/synthetic.yaml"))
    ablation = Ablation(
        name=spec.get("name", path.stem),
        base_config=base if base.is_absolute() else ROOT / base,
        stages=spec["stages"],
        seeds=list(spec.get("seeds", [0])),
        x=spec.get("x"),
        table=list(spec.get("table", [])),
        figures=list(spec.get("figures", spec.get("table", []))),
        report=spec.get("report"),
        module=spec.get("module"),
        source=path,
        slurm=dict(spec.get("slurm") or {}),
    )
    return add_sweep(ablation, sweep)


def check_axis_name(axis: str, where: str) -> None:
    """An axis may not be named like a metric of ``summary.csv`` (its values would be overwritten)."""
    if axis in metric_names() or axis.startswith("zeroshot_"):
        raise ValueError(f"{where}: axis {axis!r} is also the name of a metric in summary.csv; rename the axis (e.g. {axis}_mode)")


def add_sweep(ablation: Ablation, items) -> Ablation:
    """``--sweep trainer.max_steps=600,2400,9600``: one more axis on the report stage, named by the key's
    last part (``max_steps``), crossed with the stage's own axes (e.g. training length x k). Its runs
    have their own directories (``train__k=0__max_steps=600__seed=0``), so they never mix with the
    ablation's default runs."""
    if not items:
        return ablation
    stages = copy.deepcopy(ablation.stages)
    stage = next(st for st in stages if st["name"] == ablation.report_stage)
    axes = stage.setdefault("axes", {}) or {}
    stage["axes"] = axes
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--sweep expects KEY=v1,v2,..., got {item!r}")
        key = key.lstrip("-")
        axis = key.rsplit(".", 1)[-1]
        check_axis_name(axis, f"--sweep {item}")
        if axis in axes or any(ax["key"] == key for ax in axes.values()):
            raise ValueError(f"--sweep {item}: stage {stage['name']!r} of {ablation.name!r} already sweeps {axis!r}")
        axes[axis] = {"key": key, "values": [_parse_value(v) for v in values.split(",") if v != ""]}
    return dataclasses.replace(ablation, stages=stages, swept=ablation.swept + tuple(a for a in axes if a not in design(ablation)))


def _parse_value(text: str) -> Any:
    value = yaml.safe_load(text)
    return text if isinstance(value, (dict, list)) and not text.strip().startswith(("{", "[")) else value


def parse_only(only: list[str], ablation: Ablation) -> dict[str, list]:
    """``--only k=0,5`` -> {"k": [0, 5]}; the axis must exist and the values must be among its values."""
    out = {}
    all_axes = {a: ax for st in ablation.stages for a, ax in (st.get("axes") or {}).items()}
    for item in only:
        if "=" not in item:
            raise ValueError(f"--only expects AXIS=v1,v2, got {item!r}")
        axis, values = item.split("=", 1)
        if axis not in all_axes:
            raise ValueError(f"--only: ablation {ablation.name!r} has no axis {axis!r}; axes: {', '.join(all_axes) or 'none'}")
        wanted = [_parse_value(v) for v in values.split(",") if v != ""]
        missing = [v for v in wanted if v not in all_axes[axis]["values"]]
        if missing:
            raise ValueError(f"--only: {axis} has no value(s) {', '.join(map(str, missing))}; values: {', '.join(map(str, all_axes[axis]['values']))}")
        out[axis] = wanted
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` overrides applied to every run (``trainer.max_steps=300``)."""
    out = {}
    for item in items:
        if "=" not in item or item.startswith("="):
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        out[key.lstrip("-")] = _parse_value(value)
    return out


def expand(ablation: Ablation, out: Path, seeds: Optional[list[int]] = None, only: Optional[dict[str, list]] = None,
           overrides: Optional[dict[str, Any]] = None) -> list[Run]:
    """Every run of the ablation, stage by stage, in launch order."""
    runs: list[Run] = []
    only = only or {}
    swept = {ax["key"] for st in ablation.stages for ax in (st.get("axes") or {}).values()}
    clash = sorted(swept & set(overrides or {}))
    if clash:
        raise ValueError(f"override {clash[0]}=... would overwrite a swept axis of {ablation.name!r}: use --only to restrict the axis")
    for seed in seeds if seeds is not None else ablation.seeds:
        stage_dirs: dict[str, Path] = {}
        for st in ablation.stages:
            axes = st.get("axes") or {}
            names = list(axes)
            values = [only.get(a, list(axes[a]["values"])) for a in names]
            for combo in itertools.product(*values) if names else [()]:
                point = dict(zip(names, combo))
                ov = {"seed_everything": seed, "data.init_args.seed": seed}
                ov.update(st.get("overrides") or {})
                ov.update({axes[a]["key"]: axis_value(axes[a], v) for a, v in point.items()})
                ov.update(overrides or {})
                run = Run(st["name"], point, seed, ov, Path())
                run.dir = out / ablation.name / "runs" / run.name
                stage_dirs.setdefault(st["name"], run.dir)
                runs.append(run)
        for run in runs:
            if run.seed == seed:
                run.overrides = {k: _fill_stage_dirs(v, stage_dirs) for k, v in run.overrides.items()}
    return runs


def axis_value(axis: dict, label: Any) -> Any:
    """The override value of an axis point: the value itself, or ``values[label]`` for a mapping
    (``values: {random: null, large_gap: "{push}/checkpoints/last.ckpt"}``)."""
    values = axis["values"]
    return values[label] if isinstance(values, dict) else label


def _fill_stage_dirs(value: Any, stage_dirs: dict[str, Path]) -> Any:
    """Replace ``{stage}`` in a string override by that stage's run directory (same seed)."""
    if not isinstance(value, str):
        return value
    for stage, d in stage_dirs.items():
        value = value.replace("{" + stage + "}", str(d))
    return value


def _cli_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def cli_key(key: str) -> str:
    """An override key as the command line spells it: ``data.init_args.k`` -> ``data.k``."""
    return key.replace("data.init_args.", "data.")


def fit_command(ablation: Ablation, run: Run) -> list[str]:
    """The ``infogap fit`` command line of one run (no progress bar: the runner reports per run)."""
    args = ["fit", "--config", str(ablation.base_config), f"--trainer.default_root_dir={run.dir}"]
    if "trainer.enable_progress_bar" not in run.overrides:
        args.append("--trainer.enable_progress_bar=false")
    args += [f"--{cli_key(k)}={_cli_value(v)}" for k, v in run.overrides.items()]
    return args


# ---------------------------------------------------------------------------------------------
# Keys that change how a run reports, not what it trains: runs differing only in them are the same run.
NOT_IDENTITY = ("log_with", "wandb_project", "trainer.enable_progress_bar", "progress.every_n_seconds")
IDENTITY = "run.json"


def run_identity(ablation: Ablation, run: Run) -> dict:
    """What decides a run's result: the content of its base config and its overrides as the command line
    spells them (seed included), less the keys of ``NOT_IDENTITY``."""
    import hashlib

    overrides = sorted([cli_key(k), _cli_value(v)] for k, v in run.overrides.items() if cli_key(k) not in NOT_IDENTITY)
    return {"base_config": hashlib.sha256(ablation.base_config.read_bytes()).hexdigest(), "overrides": overrides}


def write_identity(ablation: Ablation, run: Run) -> None:
    from infogap.train.loggers import write_json_atomic

    run.dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run.dir / IDENTITY, run_identity(ablation, run))


def reuse_finished(ablation: Ablation, runs: list[Run], out: Path) -> list[Run]:
    """Give each unfinished run the result of a finished run of any ablation under ``out`` with the same
    identity (``run.json``: the same base config and overrides; e.g. the training stage of
    ``learn_forget`` and ``imbalance`` at the same k and seed): its directory is copied (checkpoints,
    metrics, logs), so nothing trains twice. Returns the runs reused."""
    import shutil

    def canonical(identity: dict) -> str:
        return json.dumps(identity, sort_keys=True)

    finished: dict[str, list[Path]] = {}
    for path in sorted(Path(out).glob(f"*/runs/*/{IDENTITY}")):
        if (path.parent / "metrics.json").is_file() and not (path.parent / "FAILED").is_file():
            finished.setdefault(canonical(json.loads(path.read_text())), []).append(path.parent)
    reused = []
    for run in runs:
        if run.finished:
            continue
        match = next((d for d in finished.get(canonical(run_identity(ablation, run)), []) if d.resolve() != run.dir.resolve()), None)
        if match is None:
            continue
        if run.dir.exists():
            shutil.rmtree(run.dir)  # an unfinished attempt: the finished run replaces it
        shutil.copytree(match, run.dir)
        print(f"{run.label()}: reused the finished run {match}", flush=True)
        reused.append(run)
    return reused


def launch_local(ablation: Ablation, runs: list[Run], jobs: int = 1, progress_every: float = 30.0) -> dict[str, str]:
    """Run every unfinished run on this machine, up to ``jobs`` at a time (each with its share of the
    cores as torch threads), a run only after the runs it depends on (``{stage}`` overrides); an
    interrupted run resumes from its last checkpoint. While they train, each running run's step and
    rate, runs done and an ETA are shown (``ablations.progress``: live on a terminal, else a line every
    ``progress_every`` seconds). Returns {run name: error} for the runs that failed or were skipped
    because a run they depend on failed (the others go on)."""
    from infogap.ablations.progress import ProgressDisplay

    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    failed: dict[str, str] = {}
    todo = [r for r in runs if not r.finished]
    print(f"{ablation.name}: {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to run"
          + (f", {jobs} at a time" if jobs > 1 and len(todo) > 1 else ""), flush=True)
    dirs = {r.name: str(r.dir) for r in runs}
    depends = {r.name: [o.name for o in todo if o is not r and any(dirs[o.name] in str(v) for v in r.overrides.values())] for r in todo}
    number = {r.name: i for i, r in enumerate(todo, 1)}
    threads = str(max(1, (os.cpu_count() or 1) // min(jobs, max(1, len(todo)))))
    env = dict(os.environ)
    if jobs > 1:
        env["OMP_NUM_THREADS"] = threads
    steps = planned_steps(ablation)
    display = ProgressDisplay(ablation.name, len(todo), jobs, every=progress_every)
    pending, running = list(todo), {}
    try:
        while pending or running:
            for run in list(pending):
                if len(running) >= jobs:
                    break
                tag = f"[{number[run.name]}/{len(todo)}] {run.label()}"
                dependency = next((d for d in depends[run.name] if d in failed), None)
                if dependency:
                    pending.remove(run)
                    failed[run.name] = f"skipped: depends on failed run {dependency}"
                    display.finished(run.name, f"{tag} skipped (depends on failed {dependency})")
                    continue
                if any(d in running or any(p.name == d for p in pending) for d in depends[run.name]):
                    continue
                pending.remove(run)
                write_identity(ablation, run)
                log = open(run.dir / "train.log", "a")
                proc = subprocess.Popen([sys.executable, "-m", "infogap", *fit_command(ablation, run), *resume_args(run.dir)],
                                        stdout=log, stderr=subprocess.STDOUT, env=env)
                running[run.name] = (run, proc, log, time.perf_counter())
                display.say(f"{tag} started")
                display.started(run.name, run.label(), run.dir)
            done = [name for name, (_, proc, _, _) in running.items() if proc.poll() is not None]
            if not done:
                display.update([steps(r) for r in pending])
                time.sleep(0.2)
                continue
            for name in done:
                run, proc, log, start = running.pop(name)
                log.close()
                seconds = time.perf_counter() - start
                tag = f"[{number[name]}/{len(todo)}] {run.label()}"
                if proc.returncode != 0 or not run.finished:
                    failed[name] = f"exit {proc.returncode}: {_failure_reason(run.dir / 'train.log')}"
                    run.record_failure(failed[name])
                    display.finished(name, f"{tag} FAILED after {seconds:.0f} s (see {run.dir / 'train.log'})")
                else:
                    run.record_failure(None)
                    m = json.loads((run.dir / "metrics.json").read_text())["metrics"]
                    display.finished(name, f"{tag} done in {seconds:.0f} s (rmg={m.get('rmg', float('nan')):.3f}, "
                                           f"moad_image={m.get('moad_image', float('nan')):.3f})")
    finally:
        display.close()
    return failed


def planned_steps(ablation: Ablation):
    """``run -> its trainer.max_steps`` (its override, else the base config's; None if neither says)."""
    base = (yaml.safe_load(ablation.base_config.read_text()) or {}).get("trainer", {}).get("max_steps")

    def steps(run: Run) -> Optional[int]:
        value = run.overrides.get("trainer.max_steps", base)
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    return steps


def resume_checkpoint(run_dir: Path) -> Optional[Path]:
    """The checkpoint an interrupted run resumes from: the newest of ``checkpoints/last.ckpt`` and the
    ``hpc_ckpt_N.ckpt`` that Lightning writes when SLURM pre-empts it (SIGUSR1), or None."""
    candidates = [p for p in [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def resume_args(run_dir: Path) -> list[str]:
    ckpt = resume_checkpoint(run_dir)
    return [f"--ckpt_path={ckpt}"] if ckpt else []


def _failure_reason(log: Path) -> str:
    """The last line of a run's log that reports an error (else its last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith("wandb")]
    return (errors or lines or ["no output"])[-1]


# ---------------------------------------------------------------------------------------------
def run_rows(ablation: Ablation, run: Run) -> list[dict]:
    """The summary rows of a finished run: its axes, seed and final metrics. A hook module's
    ``rows(run, record)`` may return several rows, with its ``EXTRA_AXES`` as extra keys."""
    record = json.loads((run.dir / "metrics.json").read_text())
    hooks = ablation.hooks()
    if hooks is not None and hasattr(hooks, "rows"):
        rows = hooks.rows(run, record)
    else:
        rows = [dict(record["metrics"])]
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


def aggregate(ablation: Ablation, runs: list[Run], out: Path, failed: Optional[dict[str, str]] = None) -> dict:
    """Write summary.csv, report.md and figures for the finished runs of the report stage."""
    results = out / ablation.name
    results.mkdir(parents=True, exist_ok=True)
    reported = [r for r in runs if r.stage == ablation.report_stage]
    rows = [row for r in reported if r.finished for row in run_rows(ablation, r)]
    failed = dict(failed or {})
    for r in runs:
        if not r.finished and r.name not in failed and r.failure:
            failed[r.name] = r.failure
    hooks = ablation.hooks()
    if hooks is not None and hasattr(hooks, "extra_rows"):  # rows of no run: baselines the analysis builds itself
        rows += hooks.extra_rows(ablation, [r for r in reported if r.finished], results)
    axes = list(dict.fromkeys([k for r in reported for k in r.axes] + list(getattr(hooks, "EXTRA_AXES", []))))
    metric_cols = sorted({k for row in rows for k in row if k not in axes and k != "seed"})
    columns = axes + ["seed"] + metric_cols
    with open(results / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    table_cols = [c for c in (ablation.table or metric_cols) if c in metric_cols]
    groups = _group(rows, axes)
    report = _report_markdown(ablation, axes, table_cols, groups, failed, sum(r.finished for r in reported), len(reported))
    figures = _figures(ablation, axes, groups, results, rows)
    if hooks is not None and hasattr(hooks, "figures"):
        figures += hooks.figures(ablation, runs, results)
    claims = run_claims(ablation, hooks, rows)
    if claims:
        report += ("\n## Claims\n\n" + CLAIMS_NOTE + "\n\n" + "\n".join(f"- {c.line()}" for c in claims) + "\n")
    if figures:
        report += "\n## Figures\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in figures) + "\n"
    (results / "report.md").write_text(report)
    return {"rows": rows, "axes": axes, "table": table_cols, "groups": groups, "figures": figures, "failed": failed, "claims": claims,
            "summary": results / "summary.csv", "report": results / "report.md"}


CLAIMS_NOTE = ("Each claim is tested over seeds: the per-seed difference it predicts, its mean with a 95 % t-interval, "
               "a one-sided paired t-test (scipy.stats.ttest_1samp) and the effect size d_z. It holds when the mean "
               "has the claimed sign and p < 0.05; one seed gives the direction only; a claim with no seed "
               "that has every arm it compares is not tested.")


def run_claims(ablation: Ablation, hooks, rows: list[dict]) -> list:
    """The hook module's ``claims(rows, design)``; with ``--sweep`` axes, once per point of them, on
    that point's rows (the claim names the point), then its ``sweep_claims`` over the whole design."""
    if hooks is None or not hasattr(hooks, "claims"):
        return []
    full = design(ablation)
    own = {a: v for a, v in full.items() if a not in ablation.swept}
    out = []
    for combo in itertools.product(*(full[a] for a in ablation.swept)):
        point = dict(zip(ablation.swept, combo))
        for claim in hooks.claims([r for r in rows if all(r.get(a) == v for a, v in point.items())], own):
            if point:
                claim.claim += " [" + ", ".join(f"{a}={v}" for a, v in point.items()) + "]"
            out.append(claim)
    if ablation.swept and hasattr(hooks, "sweep_claims"):
        out += hooks.sweep_claims(rows, full)
    return out


def design(ablation: Ablation) -> dict[str, list]:
    """The values of the report stage's axes as the ablation YAML sets them (labels, for a mapping):
    what the claims compare, whether or not every run finished."""
    stage = next(st for st in ablation.stages if st["name"] == ablation.report_stage)
    return {a: list(ax["values"]) for a, ax in (stage.get("axes") or {}).items()}


def untested(claims) -> list:
    return [c for c in claims if c.verdict == NOT_TESTED]


def _group(rows: list[dict], axes: list[str]) -> list[tuple[tuple, list[dict]]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(a) for a in axes), []).append(row)
    return sorted(groups.items(), key=lambda kv: [(str(type(v)), v) for v in kv[0]])


def format_cell(values: list) -> str:
    """The mean over seeds, and its 95 % t-interval when there are several (``analysis.mean_ci``)."""
    m, (lo, hi) = mean_ci(values)
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
            stats = [mean_ci([r.get(metric) for r in p[1]]) for p in pts]
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
