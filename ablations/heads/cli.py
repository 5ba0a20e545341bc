"""``infogap analyze heads`` (Madasu et al., EMNLP 2025; docs/results/heads.md): what each attention head of a CLIP ViT writes into the image
embedding (TEXTSPAN), how consistent its concept is (CCS), and what pruning heads by CCS costs.

    infogap analyze heads --checkpoint runs/x/checkpoints/last.ckpt --out results/heads
    infogap analyze heads --model ViT-B-32 --pretrained /models/b32.pt --images /data/val_images \\
        --texts pool.txt --concepts pool_concepts.tsv --out results/heads_b32

For an infogap run on synthetic data the images are validation renders and the text pool is the
balanced synthetic pool, whose concepts (factors) are known, so CCS is exact; the CCS a pure head of
each concept reaches on it (CCS is also given normalised by it), the labels over a second pool without
object words, and the pruning table (zero-shot accuracy per factor, MOAD, MaxSkew; sets of 8 heads)
are computed too. For any other model give ``--images`` (a folder),
``--texts`` (one text per line) and ``--concepts`` (a TSV: text, tab, concept). Writes ``heads.json``
(per head: texts, variance explained, label, CCS), ``ccs.png`` (CCS per layer x head) and, on synthetic
data, ``pruning.csv``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from infogap.ablations.heads.analysis import (TEXTS_PER_HEAD, ccs_figure, contributions, head_table, head_width, heads_share, read_pool,
                                              synthetic_analysis, synthetic_pool)
from infogap.ablations.kit.results import write_rows
from infogap.train.embed import load_encoder


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap analyze heads", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="an infogap run's checkpoint")
    p.add_argument("--model", help="an open_clip ViT name")
    p.add_argument("--pretrained", help="with --model: a local checkpoint (none: random initialisation)")
    p.add_argument("--images", help="a folder of images (default, synthetic models: validation renders)")
    p.add_argument("--texts", help="the text pool, one text per line (default, synthetic models: every factor value)")
    p.add_argument("--concepts", help="with --texts: a TSV of text, tab, concept")
    p.add_argument("--n", type=int, default=2048, help="synthetic images to decompose and to evaluate on (default 2048)")
    p.add_argument("--m", type=int, default=TEXTS_PER_HEAD, help="TEXTSPAN texts per head (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the renders and of the random head sets")
    p.add_argument("--out", default="results/heads")
    args = p.parse_args(argv)
    if bool(args.checkpoint) == bool(args.model):
        raise ValueError("give exactly one of --checkpoint CKPT or --model NAME [--pretrained PATH]")
    enc = load_encoder(args.checkpoint, args.model, args.pretrained, seed=args.seed)
    out = Path(args.out)
    meta = {"model": args.checkpoint or args.model, "pool_type": enc.model.visual.pool_type}
    if enc.word_level and not args.images and not args.texts:  # the synthetic world: exact pool, ground truth, pruning
        analysis = synthetic_analysis(enc, args.n, m=args.m, seed=args.seed)
        result = {**meta, "images": args.n, "texts": len(analysis["pool"]["texts"]), **analysis}
        table, share = analysis["heads"], analysis["heads_share"]
    else:
        if args.texts:
            texts, concepts = read_pool(args.texts, args.concepts)
            pool = torch.from_numpy(enc.texts(enc.tokenize(texts)))
        elif enc.word_level:
            texts, concepts, pool = synthetic_pool(enc)
        else:
            raise ValueError(f"--model {enc.name}: give the text pool (--texts) and its concepts (--concepts)")
        if args.images:
            images = enc.folder_images(args.images, "--images")
        elif enc.word_level:
            images = enc.source.val_batch(np.arange(args.n))["image"]
        else:
            raise ValueError(f"--model {enc.name}: give --images DIR")
        heads, rest = contributions(enc, images)
        table = head_table(heads, pool, texts, concepts, args.m, head_width=head_width(enc))
        share = heads_share(heads, rest)
        result = {**meta, "images": len(images), "texts": len(texts), "heads_share": share, "heads": table}
    out.mkdir(parents=True, exist_ok=True)
    if "pruning" in result:
        write_rows(result["pruning"], out / "pruning.csv")
    (out / "heads.json").write_text(json.dumps(result, indent=1) + "\n")
    ccs_figure(table, out / "ccs.png")
    counts = np.bincount([r["ccs"] for r in table], minlength=args.m + 1)
    print(f"{len(table)} heads; CCS distribution (0..{args.m}): {counts.tolist()}; heads carry {share:.2f} of the embedding")
    if "reachable" in result:
        print("CCS a pure head reaches on this pool: " + ", ".join(f"{c} {v:.1f}" for c, v in result["reachable"].items())
              + f"; labels unchanged over the pool without object words: {result['confound']['same_label']:.2f} of the heads")
    for r in table:
        print(f"layer {r['layer']:2d} head {r['head']:2d}  CCS {r['ccs']}  {r['label']:<10} {', '.join(r['texts'])}")
    print(f"\nheads: {out / 'heads.json'}\nfigure: {out / 'ccs.png'}", file=sys.stderr)
    return 0
