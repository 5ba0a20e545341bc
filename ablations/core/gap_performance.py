"""``infogap analyze gap-performance RUN_DIR_OR_NPZ ...`` (the reference's off-the-shelf analysis, its
Tables 1 and 3): Kendall's τ_b between each gap measure (RMG, L2M, L2I) and each performance measure
(zero-shot accuracy per factor, retrieval R@1 both ways) across models, with a two-sided permutation
p-value, over all models and within each group of models that share their training data
("conditioning on data"). A model is a run directory of any ablation (its ``metrics.json``; its group:
the data settings of its ``config.yaml`` without the seed) or an ``.npz`` of ``infogap embed`` or the
metrics callback (measures computed here; its group: the file's ``group``). Writes ``models.csv``,
``gap_performance.csv``, ``gap_performance.md`` and one scatter figure per (gap, performance) pair.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import yaml

GAP_MEASURES = ("rmg", "l2m", "l2i")
RETRIEVAL = ("recall_i2t@1", "recall_t2i@1")
# data settings that define what a model was trained on (the seed, sizes of batches and loaders do not)
DATA_KEYS = ("k", "always_present", "cooccurrence", "tokenizer", "mnist_dir", "train_size",
             "train_shards", "train_table", "caption_transform", "caption_field", "enriched_field")
MIN_MODELS = 3  # fewer models than this give no rank correlation worth a p-value


def kendall_tau_b(x, y, axis: int = -1) -> np.ndarray:
    """Kendall's τ_b = Σ_{i<j} sgn(x_i − x_j) sgn(y_i − y_j) / sqrt(Σ_{i<j} sgn(x_i − x_j)² · Σ_{i<j} sgn(y_i − y_j)²)
    (ties count in neither the numerator nor their own factor of the denominator; equals
    ``scipy.stats.kendalltau``), vectorised over the leading dimensions of ``x`` and ``y``; NaN when
    either is constant."""
    x, y = np.moveaxis(np.asarray(x, dtype=float), axis, -1), np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    i, j = np.triu_indices(x.shape[-1], 1)
    sx, sy = np.sign(x[..., i] - x[..., j]), np.sign(y[..., i] - y[..., j])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(-1) / np.sqrt((sx * sx).sum(-1) * (sy * sy).sum(-1))


def kendall_test(x, y, n_resamples: int = 100_000, seed: int = 0) -> tuple[float, float, bool]:
    """(τ_b, two-sided permutation p-value, exact): ``scipy.stats.permutation_test`` pairing ``x`` with
    every reordering of ``y``: all n! of them when n! <= ``n_resamples`` (exact), else ``n_resamples``
    random ones from ``seed`` (the observed pairing counted in, as scipy does)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    tau = float(kendall_tau_b(x, y))
    if len(x) < MIN_MODELS or math.isnan(tau):
        return tau, float("nan"), False
    # one sample permuted, the other closed over: n! reorderings (pairings of both samples would count (n!)^2)
    res = stats.permutation_test((y,), lambda yy, axis=-1: kendall_tau_b(x, yy, axis), permutation_type="pairings", vectorized=True,
                                 n_resamples=n_resamples, alternative="two-sided", random_state=seed)
    return tau, float(res.pvalue), math.factorial(len(x)) <= n_resamples


def _data_group(config: dict) -> str:
    data = config.get("data") or {}
    args = data.get("init_args", data)
    parts = [f"{k}={json.dumps(args[k], sort_keys=True) if isinstance(args[k], (dict, list)) else args[k]}"
             for k in DATA_KEYS if args.get(k) is not None]
    return " ".join(parts) or "unknown"


def model_measures(path: Path) -> dict:
    """{name, group, gap and performance measures} of a run directory or an embeddings ``.npz``."""
    path = Path(path)
    if path.is_dir():
        record = path / "metrics.json"
        if not record.is_file():
            raise FileNotFoundError(f"{path}: not a finished run (no metrics.json)")
        metrics = json.loads(record.read_text())["metrics"]
        config = path / "config.yaml"
        group = _data_group(yaml.safe_load(config.read_text()) or {}) if config.is_file() else "unknown"
        return {"model": path.name, "group": group, **metrics}
    if path.suffix == ".npz":
        import torch

        from infogap.train.metrics import check_inputs, compute_metrics, normalize
        from infogap.train.metrics_cli import load_embeddings

        emb = load_embeddings(path)
        check_inputs(emb["image"], emb["text"], emb["labels"], source=str(path))
        with np.load(path, allow_pickle=False) as npz:
            group = str(npz["group"]) if "group" in npz.files else ""
        keys = list(GAP_MEASURES) + list(RETRIEVAL) + [f"zeroshot_{f}_acc" for f in emb["classes"]]
        x, y = normalize(torch.from_numpy(emb["image"])), normalize(torch.from_numpy(emb["text"]))
        metrics = compute_metrics(x, y, emb["labels"], logit_scale=emb["logit_scale"], object_factor=emb["object_factor"],
                                  class_embeddings={f: torch.from_numpy(c) for f, c in emb["classes"].items()}, metrics=keys)
        return {"model": path.stem, "group": group or f"{path.stem} (no group)", **metrics}
    raise ValueError(f"{path}: neither a run directory nor an .npz file")


def check_distinct(paths: list[Path]) -> None:
    """Each model once: the same run directory or file given twice (or a copy of it: the same
    ``metrics.json`` or ``.npz`` bytes) would count one model as several in τ and its p."""
    import hashlib

    seen: dict[str, Path] = {}
    for path in paths:
        source = path / "metrics.json" if path.is_dir() else path
        if not source.is_file():
            continue  # model_measures says what is wrong with it
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        for key in (str(path.resolve()), digest):
            if key in seen:
                raise ValueError(f"{path}: the same model as {seen[key]} (given twice, or a copy of it); each model counts once")
            seen[key] = path


def performance_measures(models: list[dict]) -> list[str]:
    """Retrieval R@1 both ways and every zero-shot accuracy that all models have."""
    shared = set.intersection(*(set(m) for m in models)) if models else set()
    return [k for k in RETRIEVAL if k in shared] + sorted(k for k in shared if k.startswith("zeroshot_") and k.endswith("_acc"))


def gap_performance(models: list[dict], n_resamples: int = 100_000, seed: int = 0) -> list[dict]:
    """One row per (scope, gap measure, performance measure): scope ``all`` and every data group with at
    least ``MIN_MODELS`` models; n, τ_b, p, exact."""
    scopes = [("all", models)] + [(f"group: {g}", [m for m in models if m["group"] == g])
                                  for g in sorted({m["group"] for m in models})]
    rows = []
    for scope, members in scopes:
        if scope != "all" and len(members) < MIN_MODELS:
            continue
        for gap in GAP_MEASURES:
            for perf in performance_measures(models):
                tau, p, exact = kendall_test([m[gap] for m in members], [m[perf] for m in members], n_resamples, seed)
                rows.append({"scope": scope, "gap": gap, "performance": perf, "n": len(members), "tau": tau, "p_value": p, "exact": exact})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| scope | gap | performance | n | Kendall τ_b | p (two-sided permutation) |", "|---|---|---|---|---|---|"]
    for r in rows:
        p = "n/a" if math.isnan(r["p_value"]) else f"{r['p_value']:.3g}" + ("" if r["exact"] else " (sampled)")
        lines.append(f"| {r['scope']} | {r['gap']} | {r['performance']} | {r['n']} | {r['tau']:+.3f} | {p} |")
    return "\n".join(lines)


def scatter_figures(models: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from infogap.ablations.kit.results import save_figure

    groups = sorted({m["group"] for m in models})
    paths = []
    for gap in GAP_MEASURES:
        for perf in performance_measures(models):
            fig, ax = plt.subplots(figsize=(4.6, 3.6))
            for i, g in enumerate(groups):
                members = [m for m in models if m["group"] == g]
                ax.scatter([m[gap] for m in members], [m[perf] for m in members], color=f"C{i % 10}", label=g[:40])
            tau = kendall_tau_b([m[gap] for m in models], [m[perf] for m in models])
            ax.set_xlabel(gap)
            ax.set_ylabel(perf)
            ax.set_title(f"{perf} vs {gap}: τ_b = {tau:+.2f} (n = {len(models)})", fontsize=9)
            ax.grid(alpha=0.3)
            if len(groups) > 1:
                ax.legend(fontsize=6)
            paths.append(save_figure(fig, out / f"scatter_{gap}__{perf.replace('@', '_at_')}.png", dpi=100))
    return paths


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap analyze gap-performance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="run directories (metrics.json, config.yaml) and/or embeddings .npz files")
    p.add_argument("--out", default="results/gap_performance", help="output directory")
    p.add_argument("--resamples", type=int, default=100_000, help="permutations when n! is larger (default 100000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    check_distinct([Path(i) for i in args.inputs])
    models = [model_measures(Path(i)) for i in args.inputs]
    if len(models) < MIN_MODELS:
        raise ValueError(f"{len(models)} model(s) given; a rank correlation needs at least {MIN_MODELS}")
    missing = [f"{m['model']}: {g}" for m in models for g in GAP_MEASURES if g not in m]
    if missing:
        raise ValueError(f"gap measure missing for {missing[0]}")
    for m in models:
        for k in [*GAP_MEASURES, *performance_measures(models)]:
            if not isinstance(m[k], (int, float)) or not math.isfinite(m[k]):
                raise ValueError(f"model {m['model']}: {k} is {m[k]!r}, not a finite number (a diverged or broken model); leave it out")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    perf = performance_measures(models)
    with open(out / "models.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "group", *GAP_MEASURES, *perf])
        writer.writeheader()
        writer.writerows([{k: m.get(k, "") for k in writer.fieldnames} for m in models])
    rows = gap_performance(models, args.resamples, args.seed)
    with open(out / "gap_performance.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    (out / "gap_performance.md").write_text(f"# Gap vs performance across {len(models)} models\n\n{table}\n")
    figures = scatter_figures(models, out)
    print(table)
    print(f"\nmodels: {out / 'models.csv'}\ntable:  {out / 'gap_performance.csv'}\nfigures: {len(figures)} in {out}")
    return 0
