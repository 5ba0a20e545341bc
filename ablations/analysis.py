"""Helpers the ablation modules share: reading a run's saved embeddings, re-scoring transformed
embeddings, and checking a claim's direction seed by seed."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from infogap.train.metrics import compute_metrics, normalize
from infogap.train.metrics_cli import load_embeddings

RESCORED = ["l2m", "rmg", "moad_image", "moad_text", "zeroshot"]


def rescore(run_dir: Path, transform: Optional[Callable] = None, metrics=RESCORED) -> dict[str, float]:
    """Metrics of a finished run's ``embeddings.npz`` after ``transform(x, y, classes) -> (x, y, classes)``
    (class embeddings are text embeddings and are transformed with the texts). ``attr_acc_mean`` is
    added by the aggregation, like for every row."""
    emb = load_embeddings(Path(run_dir) / "embeddings.npz")
    x, y = torch.from_numpy(emb["image"]).double(), torch.from_numpy(emb["text"]).double()
    classes = {f: torch.from_numpy(c).double() for f, c in emb["classes"].items()}
    if transform is not None:
        x, y, classes = transform(x, y, classes)
    return compute_metrics(x, y, emb["labels"], logit_scale=emb["logit_scale"], class_embeddings=classes, metrics=metrics)


def shift(z: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Move every embedding by ``delta``, then re-normalise."""
    return normalize(z + delta)


def per_seed(rows: list[dict], axis: str, value) -> dict[int, dict]:
    return {r["seed"]: r for r in rows if r.get(axis) == value}


def direction(rows: list[dict], axis: str, lo, hi, metric: str, smaller_at_hi: bool, extra: Optional[dict] = None) -> tuple[str, bool, str]:
    """Claim: ``metric`` at ``axis = hi`` is below (or above) its value at ``axis = lo`` for every seed."""
    extra = extra or {}
    sel = [r for r in rows if all(r.get(k) == v for k, v in extra.items())]
    a, b = per_seed(sel, axis, lo), per_seed(sel, axis, hi)
    seeds = sorted(set(a) & set(b))
    word = "below" if smaller_at_hi else "above"
    claim = f"{metric} at {axis}={hi} is {word} {axis}={lo} for every seed" + (f" ({', '.join(f'{k}={v}' for k, v in extra.items())})" if extra else "")
    if not seeds:
        return claim, False, "no seed has both runs"
    ok = all((b[s][metric] < a[s][metric]) if smaller_at_hi else (b[s][metric] > a[s][metric]) for s in seeds)
    detail = "; ".join(f"seed {s}: {a[s][metric]:.3f} -> {b[s][metric]:.3f}" for s in seeds)
    return claim, ok, detail


def history(run_dir: Path) -> dict[int, dict]:
    """The metrics the callback logged at each evaluation step of a finished run."""
    import json

    record = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {int(step): values for step, values in record.get("history", {}).items()}


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
    fig.tight_layout()
    path = results / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
