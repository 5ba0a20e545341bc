"""The contract between the runner and a study, and the types both hooks and runner speak: one
``Study`` subclass per ablation, named in the ablation YAML (``study: infogap.ablations.core.imbalance:Imbalance``),
with its settings as a dataclass (``Settings``) filled from the YAML's ``settings:`` block and from
``NAME.key=value`` on the command line; a ``Run`` is one ``infogap fit`` of the ablation and its directory;
an ``Ablation`` is the YAML read. The runner calls these methods and knows nothing else of a study:

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
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from infogap.ablations.kit.claims import Claim
from infogap.data.files import read_yaml

# configs/ and slurm/ sit beside the code folders: in the repository (an editable install) and inside
# the installed package (a wheel ships them as infogap/configs and infogap/slurm)
ROOT = Path(__file__).resolve().parents[2]


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

    def rows(self, run: Run, record: dict) -> list[dict]:
        """One row per finished run: its final metrics (the runner adds axes, seed, ``attr_acc_mean``)."""
        return [dict(record["metrics"])]

    def extra_rows(self, ablation: Ablation, runs: list[Run], results: Path, jobs: int = 1) -> list[dict]:
        """Rows of no run: baselines the study builds itself (``jobs``: worker processes it may use,
        ``infogap.ablations.kit.parallel.parallel_map``)."""
        return []

    def claims(self, rows: list[dict], design: dict[str, list]) -> list[Claim]:
        """The claims on the rows of one point of the ``--sweep`` axes; ``design`` holds the report stage's
        axis values as the YAML sets them."""
        return []

    def sweep_claims(self, rows: list[dict], design: dict[str, list]) -> list[Claim]:
        """Claims across the ``--sweep`` axes."""
        return []

    def figures(self, ablation: Ablation, runs: list[Run], results: Path) -> list[Path]:
        """Figures beyond the runner's metric-vs-axis plots, written under ``results``."""
        return []


@dataclass
class Run:
    """One ``infogap fit`` of an ablation: its stage, its point on the stage's axes, its seed, the
    overrides its command line carries and its directory (checkpoints, ``config.yaml``, ``metrics.json``)."""

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

    @property
    def checkpoint(self) -> Path:
        """The run's last checkpoint (``checkpoints/last.ckpt`` under its directory)."""
        from infogap.train.checkpoints import last_checkpoint  # Lightning: imported when a study reads a checkpoint

        return last_checkpoint(self.dir)

    def config(self, key: str) -> Any:
        """A value of the configuration the run trained with, as Lightning saved it (``config.yaml`` in
        its directory), by dotted key (``data.init_args.batch_size``): what the run used, defaults
        included, so a study never assumes a default. A missing file or key is a one-line error."""
        path = self.dir / "config.yaml"
        node = read_yaml(path, "run config") if path.is_file() else None
        if node is None:
            raise ValueError(f"{path}: the run's saved configuration is missing (the run did not start)")
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"{path}: no {key!r} in the run's saved configuration")
            node = node[part]
        return node

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
    """An ablation YAML as ``runner.spec.load_ablation`` reads it: its stages and axes, seeds, report
    columns and figures, and its study with the study's settings."""

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
    title: str = ""  # the study and its paper ("Caption presence bias (Schrodi et al. 2025, claim 2)"); the name when the YAML has none

    @property
    def report_stage(self) -> str:
        return self.report or self.stages[-1]["name"]


def planned_steps(ablation: Ablation):
    """``run -> its trainer.max_steps`` (its override, else the base config's; None if neither says)."""
    base = (read_yaml(ablation.base_config, "base_config") or {}).get("trainer", {}).get("max_steps")

    def steps(run: Run) -> Optional[int]:
        value = run.overrides.get("trainer.max_steps", base)
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    return steps


def settings_dict(settings) -> dict:
    """The settings as plain data (for cache keys and reports): tuples as lists."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))
