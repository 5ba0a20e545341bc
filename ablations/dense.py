"""Seed 002. ``infogap probe``: dense probes on the frozen image tower of one model, with data
efficiency: segmentation or depth heads trained on 1 %, 10 % and 100 % of the labelled training
images (fixed, nested subsets per seed), evaluated beside the baselines that show the task is not
trivial (``infogap.train.dense``).

    infogap probe --checkpoint runs/x/checkpoints/last.ckpt --task seg --factor object
    infogap probe --model ViT-B-16 --pretrained /models/b16.pt --task seg --data /data/ade_small --out results/probe_b16
    infogap probe --model ViT-B-16 --pretrained /models/b16.pt --task depth --data /data/nyu_small

Without ``--data`` the images are synthetic renders (training epoch 0 and the validation split) with
their object (or colour) masks and depth maps; with ``--data`` a local dataset in the layouts of
``infogap.data.dense``. Patch features are computed once per model and data and kept under
``--cache``. Writes ``probe.json`` (every probe's metrics and the baselines).

``infogap ablate dense`` (causal): encoders trained at k = 0..5 (finished ``imbalance`` runs are
reused) and, per seed, two encoders of the same size on the same images: randomly initialised, and an
image-only masked autoencoder trained for the same steps (``infogap.train.mae``). Each is probed for
object segmentation, colour segmentation and depth on 1 %, 10 % and 100 % of the labelled images.
Claims: mIoU rises and RMSE falls with k; the best caption-trained encoder beats the MAE encoder;
the k = max encoder at 10 % of the labels beats the k = min encoder at 100 %, with how many times
fewer labels it needs to match it (``label_savings``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np

FRACTIONS = (0.01, 0.1, 1.0)


def main(argv: list[str]) -> int:
    from pytorch_lightning.loggers import WandbLogger

    from infogap.train.dense import FeatureCache, baselines, patch_features, probe_fractions, seg_classes, synthetic_targets
    from infogap.train.embed import load_encoder
    from infogap.train.loggers import make_logger

    p = argparse.ArgumentParser(prog="infogap probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="an infogap run's checkpoint")
    p.add_argument("--model", help="an open_clip ViT name")
    p.add_argument("--pretrained", help="with --model: a local checkpoint (none: random initialisation)")
    p.add_argument("--task", choices=["seg", "depth"], required=True)
    p.add_argument("--factor", default="object", help="synthetic segmentation: object or colour classes (default object)")
    p.add_argument("--data", help="a local dataset (DIR/train, DIR/val; see infogap.data.dense); default: synthetic renders")
    p.add_argument("--n-train", type=int, default=4096, help="synthetic training images (default 4096)")
    p.add_argument("--n-val", type=int, default=1024, help="synthetic validation images (default 1024)")
    p.add_argument("--layers", default="-1", help="ViT blocks whose patch tokens are the features, e.g. -1 or -2,-1")
    p.add_argument("--fractions", default=",".join(map(str, FRACTIONS)), help="label fractions (default 0.01,0.1,1.0)")
    p.add_argument("--seeds", default="0,1,2", help="probe seeds: each draws its own label subsets (default 0,1,2)")
    p.add_argument("--steps", type=int, default=300, help="probe training steps (default 300)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--decoder", choices=["linear", "conv"], default="linear")
    p.add_argument("--cache", default="results/features", help="where patch features are kept")
    p.add_argument("--out", default="results/probe")
    p.add_argument("--log_with", choices=["wandb", "csv", "none"], default="wandb",
                   help="where every probe's curves go, under --out (wandb: offline without an API key; default)")
    p.add_argument("--wandb_project", default="infogap")
    p.add_argument("--val_every", type=int, default=50, help="validate each probe every N steps (its metric curve)")
    args = p.parse_args(argv)
    if bool(args.checkpoint) == bool(args.model):
        raise ValueError("give exactly one of --checkpoint CKPT or --model NAME [--pretrained PATH]")
    layers = [int(x) for x in args.layers.split(",")]
    fractions = [float(x) for x in args.fractions.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    enc = load_encoder(args.checkpoint, args.model, args.pretrained)
    if args.data:
        from infogap.data.dense import read_classes, read_dense_split

        classes = read_classes(args.data) if args.task == "seg" else []
        size = _image_size(enc)
        splits = {s: read_dense_split(Path(args.data) / s, args.task, enc.preprocess, size, len(classes) or None) for s in ("train", "val")}
        data_key = {"data": str(Path(args.data).resolve()), "task": args.task}
    else:
        source = dataclasses.replace(enc.source, dense=True)
        task = args.factor if args.task == "seg" else "depth"
        classes = list(range(seg_classes(task))) if args.task == "seg" else []
        batches = {"train": source.train_batch(0, np.arange(args.n_train)), "val": source.val_batch(np.arange(args.n_val))}
        splits = {s: (enc.rendered(b["image"]), synthetic_targets(b, task)) for s, b in batches.items()}
        data_key = {"data": "synthetic", "seed": source.seed, "n_train": args.n_train, "n_val": args.n_val}
    model_key = FeatureCache.checkpoint_key(args.checkpoint or args.pretrained) if (args.checkpoint or args.pretrained) else {"random": args.model}
    cache = FeatureCache(args.cache)
    features = {s: cache.get({**model_key, "model": enc.name, **data_key, "split": s, "layers": layers},
                             lambda s=s: patch_features(enc.model, splits[s][0], layers)) for s in splits}
    (train_x, train_y), (val_x, val_y) = ((features[s], splits[s][1]) for s in ("train", "val"))
    n_classes = len(classes)
    logger = make_logger(args.log_with, args.out, name=f"probe-{args.task}", project=args.wandb_project)
    result = {"model": args.checkpoint or f"{args.model}={args.pretrained or ''}", "task": args.task, "layers": layers,
              "features": list(train_x.shape[1:]), "train_images": len(train_y), "val_images": len(val_y),
              "baseline": baselines(train_y, val_y, args.task, n_classes or None),
              "probes": probe_fractions(train_x, train_y, val_x, val_y, args.task, n_classes or 1, fractions, seeds, steps=args.steps,
                                        lr=args.lr, decoder=args.decoder, logger=logger, val_every=args.val_every)}
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(result, indent=1) + "\n")
    metric = "miou" if args.task == "seg" else "rmse"
    print(f"{args.task}: baseline {metric} {result['baseline'][metric]:.4f}")
    for fraction in fractions:
        values = [r[metric] for r in result["probes"] if r["fraction"] == fraction]
        print(f"  {fraction:>6.0%} labels: {metric} {np.mean(values):.4f} (± {np.std(values):.4f} over {len(values)} seeds)")
    print(f"probe: {out / 'probe.json'}", file=sys.stderr)
    return 0


def _image_size(enc) -> int:
    size = enc.model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


# --- infogap ablate dense: does caption information make dense features? ----------------------------
TASKS = ("object", "colour", "depth")  # segmentation by object class, by colour class; depth
N_TRAIN, N_VAL = 4096, 1024  # synthetic training and validation renders (seed 0: the same images for every encoder)
PROBE_STEPS = 300
EXTRA_AXES = ["encoder", "task", "fraction"]
METRIC = {"object": "miou", "colour": "miou", "depth": "rmse"}


def probe_rows(checkpoint: Path, seed: int) -> list[dict]:
    """Probe one encoder (a checkpoint ``load_encoder`` reads) on every task and label fraction, probe
    seed ``seed``: rows of {task, fraction, labelled, miou | rmse and absrel, baseline_*}."""
    from infogap.train.dense import FeatureCache, baselines, patch_features, probe_fractions, seg_classes, synthetic_targets
    from infogap.train.embed import load_encoder

    enc = load_encoder(checkpoint=str(checkpoint))
    source = dataclasses.replace(enc.source, seed=0, dense=True)
    batches = {"train": source.train_batch(0, np.arange(N_TRAIN)), "val": source.val_batch(np.arange(N_VAL))}
    cache = FeatureCache(Path(checkpoint).parent / "features")
    features = {s: cache.get({**FeatureCache.checkpoint_key(checkpoint), "split": s, "n": len(b["image"]), "layers": [-1]},
                             lambda b=b: patch_features(enc.model, enc.rendered(b["image"]))) for s, b in batches.items()}
    rows = []
    for task in TASKS:
        train_y, val_y = (synthetic_targets(batches[s], task) for s in ("train", "val"))
        kind = "depth" if task == "depth" else "seg"
        n_classes = seg_classes(task) if kind == "seg" else None
        base = {f"baseline_{k}": v for k, v in baselines(train_y, val_y, kind, n_classes).items() if k != "majority_class"}
        for r in probe_fractions(features["train"], train_y, features["val"], val_y, kind, n_classes or 1, FRACTIONS, [seed],
                                 steps=PROBE_STEPS, accelerator="cpu"):
            rows.append({"task": task, **{k: v for k, v in r.items() if k != "seed"}, **base})
    return rows


def _key() -> dict:
    return {"tasks": list(TASKS), "fractions": list(FRACTIONS), "n_train": N_TRAIN, "n_val": N_VAL, "steps": PROBE_STEPS, "batches": "one pass"}


def rows(run, record):
    from infogap.ablations.analysis import cached_json

    ckpt = Path(run.dir) / "checkpoints" / "last.ckpt"
    result = cached_json(Path(run.dir) / "dense.json", _key(), lambda: {"rows": probe_rows(ckpt, run.seed)})
    return [{"encoder": "clip", **record["metrics"], **r} for r in result["rows"]]


def extra_rows(ablation, runs, results: Path) -> list[dict]:
    """Per seed of the finished runs, the two baselines of the same model config: a randomly
    initialised encoder and a masked autoencoder trained for the runs' steps on the same images (kept
    under ``results/baselines/seed<N>/``), probed like the runs."""
    import torch

    from infogap.ablations.analysis import cached_json
    from infogap.ablations.core import planned_steps
    from infogap.data.synthetic import SyntheticDataModule
    from infogap.models.clip import read_checkpoint
    from infogap.train.mae import MaskedAutoencoder, train_mae

    out = []
    steps_of = planned_steps(ablation)
    for seed in sorted({r.seed for r in runs}):
        run = next(r for r in runs if r.seed == seed)
        hp = read_checkpoint(run.dir / "checkpoints" / "last.ckpt")["hyper_parameters"]
        steps = steps_of(run) or 600
        folder = results / "baselines" / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)

        def random_encoder() -> Path:
            torch.manual_seed(seed)
            module = MaskedAutoencoder(hp["model"], text_spec=hp.get("text_spec"))  # the same CLIP, never trained
            path = folder / "random.ckpt"
            torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
            return path

        def mae_encoder() -> Path:
            path = folder / "mae.ckpt"
            data = SyntheticDataModule(k=0, seed=seed, batch_size=int(run.overrides.get("data.init_args.batch_size", 128)))
            train_mae(hp["model"], data, steps, str(path), seed=seed, accelerator="cpu")
            return path

        for name, build in (("random", random_encoder), ("mae", mae_encoder)):
            key = {**_key(), "model": hp["model"], "encoder_steps": steps if name == "mae" else 0}
            result = cached_json(folder / f"{name}.json", key, lambda build=build: {"rows": probe_rows(build(), seed)})
            out += [{"encoder": name, "seed": seed, **r} for r in result["rows"]]
    return out


def _value(rows, **where) -> dict[int, float]:
    """{seed: the metric of the row matching ``where``} (the task's metric)."""
    metric = METRIC[where["task"]]
    return {r["seed"]: r[metric] for r in rows if all(r.get(k) == v for k, v in where.items()) and not math.isnan(r.get(metric, math.nan))}


def labels_to_match(curve: dict[float, float], target: float, higher_better: bool = True) -> tuple[float, bool]:
    """The label fraction at which a data-efficiency curve ({fraction: metric}) first reaches ``target``,
    linearly interpolated in log fraction between the measured fractions: (fraction, exact). exact is
    False when the curve already reaches the target at its smallest fraction (the fraction is then an
    upper bound); the fraction is NaN when the curve never reaches it."""
    fs = sorted(f for f in curve if not math.isnan(curve[f]))
    gap = [(curve[f] - target) * (1 if higher_better else -1) for f in fs]  # >= 0: reached
    if not fs:
        return math.nan, True
    if gap[0] >= 0:
        return fs[0], False
    for (f0, g0), (f1, g1) in zip(zip(fs, gap), zip(fs[1:], gap[1:])):
        if g1 >= 0:
            t = g0 / (g0 - g1)  # g0 < 0 <= g1
            return float(math.exp(math.log(f0) + t * (math.log(f1) - math.log(f0)))), True
    return math.nan, True


def label_savings(rows, task: str, lo, hi) -> dict[int, str]:
    """{seed: how many times fewer labels the k = ``hi`` encoder needs to match the k = ``lo`` encoder
    with all of them} (``labels_to_match`` on the k = hi data-efficiency curve), as text: "12.3x",
    ">= 100x" (already matched at the smallest fraction) or "never" (not matched with all labels)."""
    metric = METRIC[task]
    target = _value(rows, encoder="clip", task=task, fraction=1.0, k=lo)
    curves: dict[int, dict[float, float]] = {}
    for fraction in FRACTIONS:
        for s, v in _value(rows, encoder="clip", task=task, fraction=fraction, k=hi).items():
            curves.setdefault(s, {})[fraction] = v
    out = {}
    for s in sorted(set(curves) & set(target)):
        f, exact = labels_to_match(curves[s], target[s], metric == "miou")
        out[s] = "never" if math.isnan(f) else (f"{1 / f:.3g}x" if exact else f">= {1 / f:.3g}x")
    return out


def claims(rows, design):
    """mIoU rises (RMSE falls) from the smallest to the largest k at 100 % labels, per task; the best
    caption-trained encoder (over k) beats the MAE encoder, per task; and the largest-k encoder at 10 %
    of the labels beats the smallest-k encoder at 100 % (10x label efficiency; a one-sided paired test
    of the difference, not an equivalence test)."""
    from infogap.ablations.analysis import compare, paired_claim

    lo, hi = min(design["k"]), max(design["k"])
    out = []
    for task in TASKS:
        metric, better = METRIC[task], "positive" if METRIC[task] == "miou" else "negative"
        out.append(compare(rows, "k", lo, hi, metric, better, where={"encoder": "clip", "task": task, "fraction": 1.0}))
        sign = 1 if metric == "miou" else -1
        per_k = [_value(rows, encoder="clip", task=task, fraction=1.0, k=k) for k in design["k"]]
        mae = _value(rows, encoder="mae", task=task, fraction=1.0)
        best = {s: (max if sign > 0 else min)(v[s] for v in per_k if s in v) for s in mae if any(s in v for v in per_k)}
        out.append(paired_claim(f"{task}: the best caption-trained encoder beats the masked autoencoder ({metric}, 100 % labels)",
                                {s: sign * (best[s] - mae[s]) for s in best}, "positive"))
        few, full = _value(rows, encoder="clip", task=task, fraction=0.1, k=hi), _value(rows, encoder="clip", task=task, fraction=1.0, k=lo)
        savings = "; ".join(f"seed {s}: {v}" for s, v in label_savings(rows, task, lo, hi).items())
        out.append(paired_claim(f"{task}: k={hi} with 10 % of the labels beats k={lo} with all of them ({metric}; 10x fewer labels)",
                                {s: sign * (few[s] - full[s]) for s in few if s in full}, "positive",
                                f"times fewer labels k={hi} needs to match k={lo} at 100 % per seed: {savings or 'none'}"))
    return out


def figures(ablation, runs, results):
    """Per task: the metric against k, one line per label fraction, the baselines as dashed lines; and
    the data-efficiency curves (metric against the label fraction, one line per encoder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from infogap.ablations.analysis import read_summary, save_figure

    table = read_summary(results, ("encoder", "task"))
    if not table:
        return []
    fig, axs = plt.subplots(2, len(TASKS), figsize=(4.2 * len(TASKS), 6.4), squeeze=False)
    ks = sorted({r["k"] for r in table if r.get("k") is not None})
    for j, task in enumerate(TASKS):
        metric = METRIC[task]
        ax = axs[0][j]
        for i, fraction in enumerate(FRACTIONS):
            means = [np.mean([r[metric] for r in table if r["encoder"] == "clip" and r["task"] == task and r["fraction"] == fraction
                              and r["k"] == k] or [np.nan]) for k in ks]
            ax.plot(ks, means, "o-", color=f"C{i}", label=f"{fraction:.0%} labels")
            for name, style in (("mae", "--"), ("random", ":")):
                vals = [r[metric] for r in table if r["encoder"] == name and r["task"] == task and r["fraction"] == fraction]
                if vals:
                    ax.axhline(np.mean(vals), color=f"C{i}", ls=style, lw=1)
        ax.set_title(f"{task}: {metric} vs k (dashed: MAE, dotted: random)", fontsize=8)
        ax.set_xlabel("k")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        ax = axs[1][j]
        encoders = [("clip", k) for k in ks] + [("mae", None), ("random", None)]
        for name, k in encoders:
            pts = [np.mean([r[metric] for r in table if r["encoder"] == name and r["task"] == task and r["fraction"] == fraction
                            and (k is None or r["k"] == k)] or [np.nan]) for fraction in FRACTIONS]
            ax.plot(FRACTIONS, pts, "o-" if name == "clip" else "s--", label=f"k={k:g}" if name == "clip" else name,
                    color=plt.get_cmap("viridis")(ks.index(k) / max(1, len(ks) - 1)) if name == "clip" else ("C3" if name == "mae" else "0.5"))
        ax.set_xscale("log")
        ax.set_xlabel("label fraction")
        ax.set_title(f"{task}: data efficiency ({metric})", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return [save_figure(fig, results / "dense_probes.png")]
