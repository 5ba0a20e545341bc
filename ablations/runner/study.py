"""The contract between the runner and a study: one ``Study`` subclass per ablation, named in the
ablation YAML (``study: infogap.ablations.core.imbalance:Imbalance``), with its settings as a
dataclass (``Settings``) filled from the YAML's ``settings:`` block and from ``NAME.key=value`` on the
command line. The runner calls these methods and knows nothing else of a study:

==================  ==================================================================================
``rows``            the summary rows of one finished run (default: its final metrics, one row)
``extra_rows``      rows of no run: baselines the study builds itself (default: none)
``claims``          the claims it checks on the rows of one point of the ``--sweep`` axes
``sweep_claims``    claims across the ``--sweep`` axes (default: none)
``figures``         figures beyond the runner's metric-vs-axis plots (default: none)
``extra_axes``      columns of ``rows`` that are axes of the table (e.g. ``n`` removed dimensions)
``parallel_rows``   True when ``rows`` analyses its run (minutes each: fine-tunes, probes): the runner
                    then computes the runs' rows ``--jobs`` at a time, in worker processes
==================  ==================================================================================
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional


@dataclass(frozen=True)
class NoSettings:
    """A study without settings of its own."""


class Study:
    """Base class of a study: every hook with its default. Subclasses set ``Settings`` (a frozen
    dataclass whose fields are the study's settings, with defaults) and ``extra_axes``."""

    Settings: ClassVar[type] = NoSettings
    extra_axes: ClassVar[tuple[str, ...]] = ()
    parallel_rows: ClassVar[bool] = False

    def __init__(self, settings: Optional[Any] = None):
        self.settings = settings if settings is not None else self.Settings()

    def rows(self, run, record: dict) -> list[dict]:
        """One row per finished run: its final metrics (the runner adds axes, seed, ``attr_acc_mean``)."""
        return [dict(record["metrics"])]

    def extra_rows(self, ablation, runs: list, results: Path) -> list[dict]:
        return []

    def claims(self, rows: list[dict], design: dict[str, list]) -> list:
        return []

    def sweep_claims(self, rows: list[dict], design: dict[str, list]) -> list:
        return []

    def figures(self, ablation, runs: list, results: Path) -> list[Path]:
        return []


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
        raise ValueError(f"{where}: {target!r} is not a subclass of infogap.ablations.runner.study.Study")
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


def settings_dict(settings) -> dict:
    """The settings as plain data (for cache keys and reports): tuples as lists."""
    import json

    return json.loads(json.dumps(dataclasses.asdict(settings)))
