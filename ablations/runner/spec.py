"""An ablation spec: a YAML in ``configs/ablations/`` says what varies; this module reads it, expands it
into runs and builds each run's ``infogap fit`` command. The runner (``infogap.ablations.runner``)
launches the runs and aggregates them; a study (``study:``, a ``Study`` subclass) says what to make of
them.

An ablation YAML::

    name: imbalance
    study: infogap.ablations.core.imbalance:Imbalance   # the study's hooks: rows, claims, figures, ...
    settings: {}                       # the study's settings (its Settings dataclass); NAME.key=value overrides
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
import dataclasses
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from infogap.ablations.runner.study import NoSettings, Study, make_settings, study_class
from infogap.data.factors import FACTOR_NAMES
from infogap.data.files import read_yaml

# configs/ and slurm/ sit beside the code folders: in the repository (an editable install) and inside
# the installed package (a wheel ships them as infogap/configs and infogap/slurm)
ROOT = Path(__file__).resolve().parents[2]


CONFIG_DIR = ROOT / "configs" / "ablations"
DERIVED = ("attr_acc_mean",)  # columns the aggregation derives for every row
# the first part of a fit override key: an ablation may not be named like one (NAME.key=value sets a study setting)
CONFIG_SECTIONS = ("trainer", "model", "data", "metrics", "checkpoint", "progress", "optimizer", "lr_scheduler")


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
        """A run is finished when its ``metrics.json`` reads back whole (``record``)."""
        return self.record() is not None

    def record(self) -> Optional[dict]:
        """The run's ``metrics.json`` (final metrics and history), or None when it is missing, truncated
        or not a record of metrics: such a run is unfinished, and launching it again resumes it."""
        return read_record(self.dir / "metrics.json")

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


def read_record(path: Path) -> Optional[dict]:
    """A run's metrics record when the file parses and holds ``metrics`` and ``history``, else None."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("metrics"), dict) and isinstance(record.get("history"), dict)
    return record if ok else None


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
    study: Study = field(default_factory=Study)  # the study's hooks, with its settings
    source: Optional[Path] = None
    slurm: dict = field(default_factory=dict)  # sbatch resources: partition, account, time, nodes, gpus_per_node, ...
    swept: tuple[str, ...] = ()  # axes added by --sweep (add_sweep)

    @property
    def report_stage(self) -> str:
        return self.report or self.stages[-1]["name"]


def available() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def ablation_name(name: str) -> str:
    """The name of an ablation given by name or by the path of its YAML (its ``name:``, else the file's stem)."""
    if not name.endswith((".yaml", ".yml")):
        return name
    path = Path(name)
    spec = (read_yaml(path, 'ablation') or {}) if path.is_file() else {}
    return spec.get("name", path.stem) if isinstance(spec, dict) else path.stem


def load_ablation(name: str, sweep: tuple[str, ...] = (), settings: Optional[dict] = None) -> Ablation:
    """An ablation by name (``configs/ablations/NAME.yaml``) or by path to a YAML file, with the extra
    axes of ``sweep`` (see ``add_sweep``) and its study's settings: the YAML's ``settings:`` block, then
    ``settings`` (from ``NAME.key=value`` on the command line) over it."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"ablation {name!r} not found ({path}); available: {', '.join(available())}")
    spec = read_yaml(path, "ablation") or {}
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: an ablation is a mapping (name, study, stages, ...), got {type(spec).__name__}")
    known = {"name", "study", "settings", "base_config", "seeds", "x", "table", "figures", "stages", "report", "description", "slurm"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if not spec.get("stages"):
        raise ValueError(f"{path}: needs at least one stage under 'stages'")
    for st in spec["stages"]:
        if "name" not in st:
            raise ValueError(f"{path}: every stage needs a 'name'")
        for axis, ax in (st.get("axes") or {}).items():
            if not isinstance(ax, dict) or "values" not in ax or "key" not in ax:
                raise ValueError(f"{path}: axis {axis!r} of stage {st['name']!r} needs 'key' and 'values'")
            check_axis_name(axis, f"{path}: stage {st['name']!r}")
    ablation_name = spec.get("name", path.stem)
    if ablation_name in CONFIG_SECTIONS:
        raise ValueError(f"{path}: an ablation may not be named {ablation_name!r} (NAME.key=value would mean a config key)")
    cls = study_class(spec["study"], str(path)) if spec.get("study") else Study
    values = {**(spec.get("settings") or {}), **(settings or {})}
    if values and cls.Settings is NoSettings:
        raise ValueError(f"{path}: unknown setting {sorted(values)[0]!r}; valid settings: none (this study has no settings)")
    study = cls(make_settings(cls.Settings, values, f"ablation {ablation_name!r}"))
    base = Path(spec.get("base_config", "configs/synthetic.yaml"))
    ablation = Ablation(
        name=ablation_name,
        base_config=base if base.is_absolute() else ROOT / base,
        stages=spec["stages"],
        seeds=list(spec.get("seeds", [0])),
        x=spec.get("x"),
        table=list(spec.get("table", [])),
        figures=list(spec.get("figures", spec.get("table", []))),
        report=spec.get("report"),
        study=study,
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
        axes[axis] = {"key": key, "values": parse_list(values, f"--sweep {key}")}
    return dataclasses.replace(ablation, stages=stages, swept=ablation.swept + tuple(a for a in axes if a not in design(ablation)))


def _parse_value(text: str) -> Any:
    value = yaml.safe_load(text)
    return text if isinstance(value, (dict, list)) and not text.strip().startswith(("{", "[")) else value


def parse_list(text: str, option: str, kind=None) -> list:
    """``a,b,c`` of a list option: each value parsed (``kind``, e.g. ``int``, else as YAML), none empty,
    none twice; a bad value is named with its option."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(t == "" for t in items):
        raise ValueError(f"{option}: give a comma-separated list of values, got {text!r}")
    values = []
    for item in items:
        try:
            values.append(kind(item) if kind else _parse_value(item))
        except ValueError:
            raise ValueError(f"{option}: {item!r} is not {'an integer' if kind is int else 'a value'}") from None
    twice = sorted({str(v) for v in values if values.count(v) > 1})
    if twice:
        raise ValueError(f"{option}: {twice[0]} is given twice")
    return values


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2``: integers from 0 to 2**32 - 1 (what a run's ``seed_everything`` takes), at least
    one, none twice."""
    seeds = parse_list(text, "--seeds", int)
    check_seeds(seeds, "--seeds")
    return seeds


def check_seeds(seeds: list[int], where: str) -> None:
    bad = [s for s in seeds if not 0 <= s <= 2**32 - 1]
    if bad:
        raise ValueError(f"{where}: seed {bad[0]} is out of range (a seed is an integer from 0 to 4294967295)")


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
        if axis in out:
            raise ValueError(f"--only: axis {axis!r} is given twice")
        wanted = parse_list(values, f"--only {axis}")
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


def split_settings(name: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fit overrides, study settings): ``NAME.key=value`` (NAME the ablation's name, e.g.
    ``learn_forget.steps=200``) sets the study's setting ``key``; every other key goes to each run."""
    prefix = name + "."
    settings = {k[len(prefix):]: v for k, v in overrides.items() if k.startswith(prefix)}
    return {k: v for k, v in overrides.items() if not k.startswith(prefix)}, settings


def check_runs(ablation: Ablation, runs: list[Run], overrides: dict[str, Any]) -> None:
    """Before anything is launched: the ``infogap fit`` command of one run of each stage parses against
    the base config (every key exists and every value has its type), so a mistyped override fails
    once, here, with one line, not in every run. An override named like an axis of the ablation is
    most likely meant as ``--only``."""
    from infogap.train.cli import ConfigError, check_fit_args

    axes = {a for st in ablation.stages for a in (st.get("axes") or {})}
    first = {}
    for run in runs:
        first.setdefault(run.stage, run)
    try:
        check_fit_args(*(fit_command(ablation, run) for run in first.values()))
    except ConfigError as exc:
        bad = next((k for k in overrides if cli_key(k) in str(exc) or k in str(exc)), None)
        hint = f"; to run some values of the axis {bad!r}, use --only {bad}=..." if bad in axes else ""
        where = f"override {bad}={_cli_value(overrides[bad])}" if bad else "the runs' configuration"
        raise ValueError(f"{where}: {exc} (checked against {ablation.base_config.name} before launching){hint}") from None


@dataclass
class Resolved:
    """An ablation as ``infogap ablate NAME [key=value ...] --sweep ... --only ... --seeds ...`` means it:
    the ablation with its study settings, its runs under ``out``, the fit overrides and the parsed
    ``--only`` restrictions."""

    ablation: Ablation
    runs: list[Run]
    overrides: dict[str, Any]
    only: dict[str, list]


def resolve(name: str, overrides: list[str], sweep: list[str], seeds: Optional[list[int]], only: list[str], out: Path) -> Resolved:
    """What ``infogap ablate`` and ``infogap reproduce`` both do first: split the overrides into fit
    overrides and study settings, load the ablation with its sweep axes, and expand its runs."""
    fit_overrides, settings = split_settings(ablation_name(name), parse_overrides(overrides))
    ablation = load_ablation(name, sweep, settings)
    restricted = parse_only(only, ablation)
    return Resolved(ablation, expand(ablation, out, seeds, restricted, fit_overrides), fit_overrides, restricted)


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


def cores_per_worker(workers: int) -> int:
    """The torch threads of each of ``workers`` processes sharing this machine's cores (at least 1):
    the training subprocesses of the local launcher and the analysis workers of aggregation."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def fit_command(ablation: Ablation, run: Run) -> list[str]:
    """The ``infogap fit`` command line of one run (no progress bar: the runner reports per run)."""
    args = ["fit", "--config", str(ablation.base_config), f"--trainer.default_root_dir={run.dir}"]
    if "trainer.enable_progress_bar" not in run.overrides:
        args.append("--trainer.enable_progress_bar=false")
    args += [f"--{cli_key(k)}={_cli_value(v)}" for k, v in run.overrides.items()]
    return args


def planned_steps(ablation: Ablation):
    """``run -> its trainer.max_steps`` (its override, else the base config's; None if neither says)."""
    base = (read_yaml(ablation.base_config, "base_config") or {}).get("trainer", {}).get("max_steps")

    def steps(run: Run) -> Optional[int]:
        value = run.overrides.get("trainer.max_steps", base)
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    return steps


def design(ablation: Ablation) -> dict[str, list]:
    """The values of the report stage's axes as the ablation YAML sets them (labels, for a mapping):
    what the claims compare, whether or not every run finished."""
    stage = next(st for st in ablation.stages if st["name"] == ablation.report_stage)
    return {a: list(ax["values"]) for a, ax in (stage.get("axes") or {}).items()}
