"""From an ablation to its runs: the command line's lists (``--seeds``, ``--only``, ``key=value``
overrides, ``NAME.key=value`` study settings, ``--exclude``) parsed and checked, the runs expanded stage by stage, and
each run's ``infogap fit`` command (``fit_command``), checked against the base config before anything
is launched (``check_runs``)."""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from infogap.ablations.kit.study import Ablation, Run
from infogap.ablations.runner.spec import _parse_value, ablation_name, excluded, load_ablation, parse_exclude, parse_list, parse_only


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


def resolve(name: str, overrides: list[str], sweep: list[str], seeds: Optional[list[int]], only: list[str], out: Path,
            exclude: Optional[list[str]] = None) -> Resolved:
    """What ``infogap ablate`` and ``infogap reproduce`` both do first: split the overrides into fit
    overrides and study settings, load the ablation with its sweep axes, and expand its runs."""
    fit_overrides, settings = split_settings(ablation_name(name), parse_overrides(overrides))
    ablation = load_ablation(name, sweep, settings)
    restricted = parse_only(only, ablation)
    dropped = parse_exclude(exclude or [], ablation)
    return Resolved(ablation, expand(ablation, out, seeds, restricted, fit_overrides, dropped), fit_overrides, restricted)


def expand(ablation: Ablation, out: Path, seeds: Optional[list[int]] = None, only: Optional[dict[str, list]] = None,
           overrides: Optional[dict[str, Any]] = None, exclude: Optional[list[dict[str, list]]] = None) -> list[Run]:
    """Every run of the ablation, stage by stage, in launch order (less the points ``exclude`` drops)."""
    runs: list[Run] = []
    only = only or {}
    swept = {ax["key"] for st in ablation.stages for ax in (st.get("axes") or {}).values()}
    clash = sorted(swept & set(overrides or {}))
    if clash:
        raise ValueError(f"override {clash[0]}=... would overwrite a swept axis of {ablation.name!r}: use --only to restrict the axis "
                         f"to some of its values, or --sweep {clash[0]}=v1,v2 to sweep other values")
    stage_exclude = {st["name"]: parse_exclude(st.get("exclude") or [], ablation) for st in ablation.stages}
    for seed in seeds if seeds is not None else ablation.seeds:
        stage_dirs: dict[str, Path] = {}
        for st in ablation.stages:
            axes = st.get("axes") or {}
            names = list(axes)
            values = [only.get(a, list(axes[a]["values"])) for a in names]
            dropped = stage_exclude[st["name"]] + list(exclude or [])  # the stage's own, then the command line's
            for combo in itertools.product(*values) if names else [()]:
                point = dict(zip(names, combo))
                if excluded(point, dropped):
                    continue
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
