"""What the runner and the studies read and write about finished runs: a cached per-run analysis
(``cached_json``), a run's evaluation history, an ablation's ``summary.csv``, and figures."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np


def cached_json(path: Path, key: dict, compute: Callable[[], dict]) -> dict:
    """The dict kept in ``path`` when it was computed under the same ``key`` (the inputs that decide it),
    else ``compute()``, written there atomically with its key: an analysis of a finished run is done
    once and redone only when what it depends on changed."""
    from infogap.train.loggers import write_json_atomic

    path = Path(path)
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved
    result = {"key": key, **compute()}
    write_json_atomic(path, result, indent=1)
    return result


def history(run_dir: Path) -> dict[int, dict]:
    """The metrics the callback logged at each evaluation step of a finished run."""
    record = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {int(step): values for step, values in record.get("history", {}).items()}


def run_start(run_dir: Path) -> dict:
    """The metrics of a run at step 0, before its first optimizer step (the evaluation every run makes
    at its start, kept in its checkpoints, so a resumed run has it too). A run without it (an
    evaluation history cut by a resume before this was kept) is refused: its start is unknown."""
    h = history(run_dir)
    if 0 not in h:
        first = f"starts at step {min(h)}" if h else "is empty"
        raise ValueError(f"{Path(run_dir) / 'metrics.json'}: no evaluation at step 0 (its history {first}), so the run's start is "
                         "unknown; train it again (--overwrite) to use it here")
    return h[0]


def curve_figure(runs, results: Path, name: str, metrics: list[str], label: Callable) -> Path:
    """Curves of ``metrics`` over training steps, one line per run (colour by ``label(run)``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, len(metrics), figsize=(3.8 * len(metrics), 3.0), squeeze=False)
    colours = {}
    for run in runs:
        if not run.finished:
            continue
        h = history(run.dir)
        steps = sorted(h)
        key = label(run)
        colour = colours.setdefault(key, f"C{len(colours)}")
        for ax, metric in zip(axs[0], metrics):
            ax.plot(steps, [h[s].get(metric, np.nan) for s in steps], color=colour, alpha=0.8,
                    label=key if run.seed == min(r.seed for r in runs) else None)
    for ax, metric in zip(axs[0], metrics):
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, results / f"{name}.png")


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Lay a matplotlib figure out, write it to ``path`` and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def write_rows(rows: list[dict], path: Path) -> Path:
    """``rows`` as a CSV file, its columns every key of the rows in order of first appearance (a row
    without one leaves its cell empty)."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def read_summary(results: Path, text: tuple[str, ...] = ()) -> list[dict]:
    """An ablation's ``summary.csv`` as rows: numbers as floats, empty cells as None, the columns in
    ``text`` as strings, and any other cell that is not a number (an axis of names, such as a model
    size) as its string."""
    import csv

    def cell(v):
        if v in ("", None):
            return None
        try:
            return float(v)
        except ValueError:
            return v

    path = Path(results) / "summary.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: (v if k in text else cell(v)) for k, v in r.items()} for r in csv.DictReader(f)]
