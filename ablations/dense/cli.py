"""``infogap probe`` (Vasu et al., arXiv 2405.08911; docs/results/dense.md): dense probes on the frozen image tower of one model, with data
efficiency: segmentation or depth heads trained on 1 %, 10 % and 100 % of the labelled training
images (fixed, nested subsets per seed), evaluated beside the baselines that show the task is not
trivial (``infogap.ablations.dense.probe``).

    infogap probe --checkpoint runs/x/checkpoints/last.ckpt --task seg --factor object
    infogap probe --model ViT-B-16 --pretrained /models/b16.pt --task seg --data /data/ade_small --out results/probe_b16
    infogap probe --model ViT-B-16 --pretrained /models/b16.pt --task depth --data /data/nyu_small

Without ``--data`` the images are synthetic renders (training epoch 0 and the validation split) with
their object (or colour) masks and depth maps; with ``--data`` a local dataset in the layouts of
``infogap.ablations.dense.datasets``. Patch features are computed once per model and data and kept under
``--cache``. Writes ``probe.json`` (every probe's metrics and the baselines).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from infogap.ablations.dense.study import Settings

FRACTIONS = Settings().fractions


def main(argv: list[str]) -> int:
    from pytorch_lightning.loggers import WandbLogger

    from infogap.ablations.dense.probe import FeatureCache, baselines, patch_features, probe_fractions, seg_classes, synthetic_targets
    from infogap.train.embed import load_encoder
    from infogap.train.loggers import make_logger

    p = argparse.ArgumentParser(prog="infogap probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="an infogap run's checkpoint")
    p.add_argument("--model", help="an open_clip ViT name")
    p.add_argument("--pretrained", help="with --model: a local checkpoint (none: random initialisation)")
    p.add_argument("--task", choices=["seg", "depth"], required=True)
    p.add_argument("--factor", default="object", choices=["object", "colour", "edge"],
                   help="synthetic segmentation: object or colour classes, or edge (background, interior, edge; default object)")
    p.add_argument("--depth-target", default="depth", choices=["depth", "scale_depth", "plane"],
                   help="synthetic depth: the random surface no caption word decides (default), the scaling-decided one, or (a "
                        "layout-world checkpoint) the plane the plane word decides")
    p.add_argument("--data", help="a local dataset (DIR/train, DIR/val; see infogap.ablations.dense.datasets); default: synthetic renders")
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
        from infogap.ablations.dense.datasets import read_classes, read_dense_split

        classes = read_classes(args.data) if args.task == "seg" else []
        size = _image_size(enc)
        splits = {s: read_dense_split(Path(args.data) / s, args.task, enc.preprocess, size, len(classes) or None) for s in ("train", "val")}
        data_key = {"data": str(Path(args.data).resolve()), "task": args.task}
    else:
        source = dataclasses.replace(enc.source, dense=True)
        task = args.factor if args.task == "seg" else args.depth_target
        classes = list(range(seg_classes(task))) if args.task == "seg" else []
        batches = {"train": source.train_batch(0, np.arange(args.n_train)), "val": source.val_batch(np.arange(args.n_val))}
        splits = {s: (enc.rendered(b["image"]), synthetic_targets(b, task)) for s, b in batches.items()}
        data_key = {"data": "synthetic", "seed": source.seed, "n_train": args.n_train, "n_val": args.n_val, "render": "dense-v2", "layout": source.layout}
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
