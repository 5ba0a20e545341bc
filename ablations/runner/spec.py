"""An ablation spec: a YAML in ``configs/ablations/`` says what varies; this module reads it (with its
study and the study's settings, checked), ``expand`` turns it into runs and their ``infogap fit``
commands. The runner (``infogap.ablations.runner``) launches the runs and aggregates them; a study
(``study:``, a ``Study`` subclass of ``infogap.ablations.kit``) says what to make of them.

An ablation YAML::

    name: imbalance
    title: "Information imbalance drives ... (Schrodi et al. 2025, claim 1)"   # the study and its paper, heading its report section
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
import importlib
from pathlib import Path
from typing import Any, Optional

import yaml

from infogap.ablations.kit.study import ROOT, Ablation, NoSettings, Study
from infogap.data.factors import FACTOR_NAMES
from infogap.data.files import read_yaml

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
    known = {"name", "title", "study", "settings", "base_config", "seeds", "x", "table", "figures", "stages", "report", "description", "slurm"}
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
        title=str(spec.get("title") or ablation_name),
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
    for st in spec["stages"]:  # a stage's own exclude: the points of its axes' product it never runs (--exclude's syntax)
        items = st.get("exclude") or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"{path}: stage {st['name']!r}: exclude is a list of 'AXIS=v1,v2 AXIS=v' strings, got {items!r}")
        try:
            parse_exclude(items, ablation)
        except ValueError as exc:
            raise ValueError(f"{path}: stage {st['name']!r}: {str(exc).replace('--exclude', 'exclude', 1)}") from None
    return add_sweep(ablation, sweep)


def check_axis_name(axis: str, where: str) -> None:
    """An axis may not be named like a metric of ``summary.csv`` (its values would be overwritten)."""
    if axis in metric_names() or axis.startswith("zeroshot_"):
        raise ValueError(f"{where}: axis {axis!r} is also the name of a metric in summary.csv; rename the axis (e.g. {axis}_mode)")


def add_sweep(ablation: Ablation, items) -> Ablation:
    """``--sweep trainer.max_steps=600,2400,9600``: one more axis on the report stage, named by the key's
    last part (``max_steps``), crossed with the stage's own axes (e.g. training length x k). Its runs
    have their own directories (``train__k=0__max_steps=600__seed=0``), so they never mix with the
    ablation's default runs. A sweep of an axis the stage already sweeps, same name and key, replaces
    its values (``--sweep trainer.max_steps=4`` for dense's budgets in the smoke plan)."""
    if not items:
        return ablation
    stages = copy.deepcopy(ablation.stages)
    stage = next(st for st in stages if st["name"] == ablation.report_stage)
    axes = stage.setdefault("axes", {}) or {}
    stage["axes"] = axes
    added: set[str] = set()
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--sweep expects KEY=v1,v2,..., got {item!r}")
        key = key.lstrip("-")
        axis = key.rsplit(".", 1)[-1]
        check_axis_name(axis, f"--sweep {item}")
        same = next((a for a, ax in axes.items() if ax["key"] == key), None)
        if same is not None and same == axis and axis not in added:  # the stage's own axis: these values instead of the YAML's
            axes[axis] = {**axes[axis], "values": parse_list(values, f"--sweep {key}")}
            added.add(axis)
            continue
        if axis in axes or same is not None:
            raise ValueError(f"--sweep {item}: stage {stage['name']!r} of {ablation.name!r} already sweeps {axis!r}")
        axes[axis] = {"key": key, "values": parse_list(values, f"--sweep {key}")}
        added.add(axis)
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


def design(ablation: Ablation) -> dict[str, list]:
    """The values of the report stage's axes as the ablation YAML sets them (labels, for a mapping):
    what the claims compare, whether or not every run finished."""
    stage = next(st for st in ablation.stages if st["name"] == ablation.report_stage)
    return {a: list(ax["values"]) for a, ax in (stage.get("axes") or {}).items()}


def study_class(target: str, where: str) -> type:
    """``module:Class`` -> the class, which must subclass ``Study``; one-line errors naming ``where``."""
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"{where}: study must be 'module:Class', got {target!r}")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{where}: study {target!r} cannot be loaded ({exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, Study)):
        raise ValueError(f"{where}: {target!r} is not a subclass of infogap.ablations.kit.study.Study")
    return cls


def make_settings(cls: type, values: dict, where: str):
    """The settings dataclass ``cls`` filled from ``values`` (YAML or command line), each value checked
    against its field's default: an unknown name or a value of the wrong kind is a one-line error
    naming ``where`` and the valid names."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "none (this study has no settings)"
        raise ValueError(f"{where}: unknown setting {unknown[0]!r}; valid settings: {valid}")
    defaults = cls()
    return cls(**{k: _coerce(v, getattr(defaults, k), f"{where}: setting {k!r}") for k, v in values.items()})


def _coerce(value: Any, default: Any, where: str) -> Any:
    """``value`` in the kind of ``default`` (an int where an int is, a tuple for a list, ...)."""
    def bad(kind: str):
        return ValueError(f"{where} must be {kind}, got {value!r}")

    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if isinstance(default, tuple):
        items = value if isinstance(value, (list, tuple)) else [value]
        if default and items:
            return tuple(_coerce(v, default[0], where) for v in items)
        return tuple(items)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad("a mapping")
        unknown = [k for k in value if default and k not in default]
        if unknown:
            raise ValueError(f"{where} has no key {unknown[0]!r}; keys: {', '.join(map(str, default))}")
        return {**default, **{k: _coerce(v, default.get(k), f"{where}[{k!r}]") for k, v in value.items()}}
    return value


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


def parse_exclude(exclude: list[str], ablation: Ablation) -> list[dict[str, list]]:
    """``--exclude "always_present=object k=1"`` -> [{"always_present": ["object"], "k": [1]}]: each item drops
    the points of the axes' product where every condition it lists holds (space-separated AXIS=v1,v2, checked
    as ``--only``'s): learn_forget's product of k and the factor always named, less the object at k = 1, say."""
    out = []
    for item in exclude:
        conditions = item.split()
        if not conditions:
            raise ValueError("--exclude expects AXIS=v1,v2 [AXIS=v ...], got an empty value")
        try:
            out.append(parse_only(conditions, ablation))
        except ValueError as exc:
            raise ValueError(str(exc).replace("--only", "--exclude", 1)) from None
    return out


def excluded(point: dict[str, Any], exclude: list[dict[str, list]]) -> bool:
    """Whether ``--exclude`` drops a point: some item's every condition names an axis of the point and holds."""
    return any(all(a in point and point[a] in values for a, values in cond.items()) for cond in exclude)
