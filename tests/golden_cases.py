"""Golden outputs of a fixed tiny finished run (``tests/golden/run``: 30 steps of ``tiny`` at k = 2, its
metrics, embeddings and weights) and of its embeddings file: the full metric dict, and for every study
the rows it makes of the run (its analysis at shrunken settings) and its claims over a fixed design
built from those rows. ``tests/test_golden.py`` compares what the code computes now with
``tests/golden/expected.json``; ``python -m tests.golden_cases`` rewrites that file, which is done
only on purpose, when a change of the science is meant to change the numbers (say so in the commit).
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent / "golden"
EXPECTED = GOLDEN / "expected.json"

# each study's analysis, shrunk so that the whole golden set computes in seconds
SETTINGS = {
    "bias": {"permutations": 2_000},
    "dense": {"n_train": 64, "n_val": 32, "probe_steps": 3, "finetune_steps": 2, "tasks": ["object", "depth", "scale_depth"]},  # a 28-px run: no plane
    "learn_forget": {"epochs": 2, "finetune_seeds": [0], "n_train": 64, "n_eval": 64, "batch_size": 16,
                     "lr": {"full": 1e-3, "linear": 1e-2, "bitfit": 1e-2}},
    "heads": {"images": 64},
}
# the axes each study's report stage has (its YAML), and the point of them the golden run stands at
POINTS = {
    "imbalance": {"k": 2}, "presence": {"always_present": "object"}, "gap_dims": {"k": 2}, "posthoc": {"k": 2},
    "temperature": {"temperature_mode": "learnable"}, "init_gap": {"init": "large_gap"},
    "bias": {"model_size": "tiny", "cooccurrence_p": 0.5}, "dense": {"k": 2}, "learn_forget": {"k": 2, "always_present": "object"},
    "heads": {"k": 2},
}


def golden_run(tmp: Path) -> Path:
    """A copy of the golden run in the layout of a finished run (``checkpoints/last.ckpt``)."""
    run = Path(tmp) / "golden_run"
    if not run.exists():
        shutil.copytree(GOLDEN / "run", run, ignore=shutil.ignore_patterns("model.pt"))
        (run / "checkpoints").mkdir()
        shutil.copy(GOLDEN / "run" / "model.pt", run / "checkpoints" / "last.ckpt")
    return run


def metric_dict() -> dict:
    import torch

    from infogap.train.metrics import compute_metrics
    from infogap.train.metrics_cli import load_embeddings

    emb = load_embeddings(GOLDEN / "run" / "embeddings.npz")
    return compute_metrics(torch.from_numpy(emb["image"]), torch.from_numpy(emb["text"]), emb["labels"],
                           logit_scale=emb["logit_scale"], object_factor=emb["object_factor"],
                           class_embeddings={f: torch.from_numpy(c) for f, c in emb["classes"].items()})


def _perturbed(rows: list[dict], step: int, seed: int, keep=()) -> list[dict]:
    """The rows of another (design point, seed): every measured number (not the columns in ``keep``: axes
    such as a label fraction) moved by a fixed, known amount."""
    out = []
    for r in rows:
        out.append({k: (v * (1 + 0.03 * seed) + 0.05 * step if isinstance(v, float) and k not in keep else v)
                    for k, v in r.items()})
    return out


def design_rows(name: str, rows: list[dict], design: dict[str, list], keep=(), exclude=()) -> list[dict]:
    """The golden run's rows at every point of ``design`` that ``exclude`` (the stage's own) leaves and
    seeds 0, 1, 2 (numbers moved per point and seed by ``_perturbed``), as the claims of the study read them."""
    import itertools

    from infogap.ablations.runner.spec import excluded

    axes = list(design)
    out = []
    for i, combo in enumerate(itertools.product(*(design[a] for a in axes))):
        if excluded(dict(zip(axes, combo)), list(exclude)):
            continue
        for seed in (0, 1, 2):
            for r in _perturbed(rows, i, seed, keep):
                out.append({**r, **dict(zip(axes, combo)), "seed": seed})
    return out


def compute(tmp: Path) -> dict:
    """Everything the golden file holds, computed by the code as it is now."""
    from tests.golden_api import study_outputs

    run = golden_run(tmp)
    out = {"metrics": metric_dict(), "studies": {}}
    for name in POINTS:
        out["studies"][name] = study_outputs(name, run, POINTS[name], SETTINGS.get(name, {}), Path(tmp) / f"results_{name}")
    return json.loads(json.dumps(out, default=_plain))


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"not JSON: {type(v)}")


def assert_same(got, want, where: str = "") -> None:
    """Equal structure, strings and integers exactly, floats to a relative 1e-5 and an absolute 1e-6 near
    zero (NaN equals NaN): the probes and fine-tunes inside some rows train on the CPU, whose float sums
    may differ in the last digits with the threads a process happens to use, and an effect size near 0
    is a ratio of small numbers; any change of what is computed moves far more. A string (a claim's
    detail) equals when its words are equal and its printed numbers differ by at most one unit of their
    last printed digit and 1 % (the rounding of such a float)."""
    if isinstance(want, str) and isinstance(got, str) and got != want:
        number = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
        gw, ww = re.split(number, got), re.split(number, want)
        assert gw == ww, f"{where}: {got!r} != {want!r}"
        for g, w in zip(re.findall(number, got), re.findall(number, want)):
            last = 10.0 ** -len(w.split("e")[0].partition(".")[2]) * (10.0 ** int(w.split("e")[1]) if "e" in w else 1)
            diff = abs(float(g) - float(w))
            assert diff <= 1.01 * last and diff <= 0.01 * abs(float(w)), f"{where}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {sorted(set(got) ^ set(want))}"
        for k in want:
            assert_same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert isinstance(got, (float, int)), f"{where}: {got!r} != {want!r}"
        if math.isnan(want):
            assert math.isnan(got), f"{where}: {got} != nan"
        else:
            assert got == want or abs(got - want) <= 1e-5 * max(0.1, abs(want)), f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        EXPECTED.write_text(json.dumps(compute(Path(d)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED}")
