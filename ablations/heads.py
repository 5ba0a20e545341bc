"""``infogap analyze heads`` (seed 004): what each attention head of a CLIP ViT writes into the image
embedding (TEXTSPAN), how consistent its concept is (CCS), and what pruning heads by CCS costs.

    infogap analyze heads --checkpoint runs/x/checkpoints/last.ckpt --out results/heads
    infogap analyze heads --model ViT-B-32 --pretrained /models/b32.pt --images /data/val_images \\
        --texts pool.txt --concepts pool_concepts.tsv --out results/heads_b32

For an infogap run on synthetic data the images are validation renders and the text pool is every
factor value, whose concept (its factor) is known, so CCS is exact; the pruning table (zero-shot
accuracy per factor, MOAD, MaxSkew) is computed too. For any other model give ``--images`` (a folder),
``--texts`` (one text per line) and ``--concepts`` (a TSV: text, tab, concept). Writes ``heads.json``
(per head: texts, variance explained, label, CCS), ``ccs.png`` (CCS per layer x head) and, on synthetic
data, ``pruning.csv``.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from infogap.ablations.analysis import cached_json, paired_claim, save_figure
from infogap.train.embed import BATCH, Encoder, load_encoder

TEXTS_PER_HEAD = 5  # the published CCS uses 5 TEXTSPAN texts per head
HIGH, LOW = 5, 1  # high-CCS heads: CCS = 5; low-CCS heads: CCS <= 1
RANDOM_DRAWS = 5


def synthetic_pool(enc: Encoder) -> tuple[list[str], list[str], torch.Tensor]:
    """(texts, concepts, embeddings): every factor value as a text (its single caption word), its factor
    as its concept."""
    from infogap.data.factors import FACTORS

    texts, concepts = [], []
    for factor, values in FACTORS.items():
        texts += list(values)
        concepts += [factor] * len(values)
    return texts, concepts, torch.from_numpy(enc.texts(enc.tokenize(texts)))


def read_pool(texts_path: str, concepts_path: Optional[str]) -> tuple[list[str], list[str]]:
    """A text pool (one text per line) and the concept of each text (TSV: text, tab, concept); a blank
    line or a text without a concept is a one-line error naming the file and line."""
    path = Path(texts_path)
    if not path.is_file():
        raise FileNotFoundError(f"--texts: no such file: {path}")
    texts = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            raise ValueError(f"{path}, line {i}: blank line (one text per line)")
        texts.append(line.strip())
    if not concepts_path:
        raise ValueError("--texts needs --concepts (a TSV: text, tab, concept) for the heads' labels and CCS")
    cpath = Path(concepts_path)
    if not cpath.is_file():
        raise FileNotFoundError(f"--concepts: no such file: {cpath}")
    concept = {}
    for i, line in enumerate(cpath.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip():
            raise ValueError(f"{cpath}, line {i}: expected 'text<TAB>concept', got {line!r}")
        concept[parts[0].strip()] = parts[1].strip()
    for i, t in enumerate(texts, 1):
        if t not in concept:
            raise ValueError(f"{cpath}: no concept for the text {t!r} ({path}, line {i})")
    return texts, [concept[t] for t in texts]


@torch.no_grad()
def contributions(enc: Encoder, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Head contributions (N, L, H, d) and the rest (N, d) over all images, in batches."""
    from infogap.models.decompose import head_contributions

    parts = [head_contributions(enc.model, images[i: i + BATCH]) for i in range(0, len(images), BATCH)]
    return torch.cat([h for h, _ in parts]), torch.cat([r for _, r in parts])


def head_table(heads: torch.Tensor, pool: torch.Tensor, texts: list[str], concepts: list[str], m: int = TEXTS_PER_HEAD) -> list[dict]:
    """Per (layer, head): its TEXTSPAN texts with the variance each explains, its concept label and CCS."""
    from infogap.models.decompose import concept_consistency, textspan

    table = []
    for layer in range(heads.shape[1]):
        for head in range(heads.shape[2]):
            idx, shares = textspan(heads[:, layer, head], pool, m=m)
            label, ccs = concept_consistency([concepts[j] for j in idx]) if idx else ("", 0)
            table.append({"layer": layer, "head": head, "texts": [texts[j] for j in idx], "concepts": [concepts[j] for j in idx],
                          "variance_explained": shares, "label": label, "ccs": ccs})
    return table


def prune_sets(table: list[dict], seed: int = 0) -> dict[str, list[tuple[int, int]]]:
    """The head sets the published table compares: high-CCS (CCS = 5), low-CCS (<= 1), random heads of the
    high set's size (5 draws from ``seed``), and per concept all heads labelled with it."""
    key = lambda r: (r["layer"], r["head"])  # noqa: E731
    sets = {"high": [key(r) for r in table if r["ccs"] >= HIGH], "low": [key(r) for r in table if r["ccs"] <= LOW]}
    rng = random.Random(seed)
    everyone = [key(r) for r in table]
    for i in range(RANDOM_DRAWS):
        sets[f"random_{i}"] = rng.sample(everyone, len(sets["high"]))
    for label in sorted({r["label"] for r in table if r["label"]}):
        sets[f"concept_{label}"] = [key(r) for r in table if r["label"] == label]
    return sets


@torch.no_grad()
def evaluate_synthetic(enc: Encoder, n: int = 1024, k: int = 50) -> dict[str, float]:
    """Zero-shot accuracy per factor, MOAD (image) and MaxSkew@k of the object-only prompts over each
    attribute factor (mean), on ``n`` validation renders."""
    from infogap.data.factors import ATTRIBUTE_FACTORS, FACTOR_NAMES, OBJECT
    from infogap.train.evaluation import class_embeddings
    from infogap.train.metrics import compute_metrics, max_skew

    batch = enc.source.val_batch(np.arange(n))
    x = torch.from_numpy(enc.images(enc.rendered(batch["image"]))).double()
    y = torch.from_numpy(enc.texts(batch["text_full"])).double()
    labels = {f: batch["labels"][f].numpy() for f in FACTOR_NAMES}
    embed = lambda tokens: torch.from_numpy(enc.texts(tokens)).double()  # noqa: E731
    classes = {f: class_embeddings(embed, enc.source.class_prompts(f, 8, "full")) for f in FACTOR_NAMES}
    out = compute_metrics(x, y, labels, class_embeddings=classes, metrics=["zeroshot", "moad_image"])
    neutral = torch.from_numpy(enc.texts(enc.source.class_prompts(OBJECT, 1, "word")[:, 0])).double()
    out["max_skew"] = float(np.mean([max_skew(x, neutral, labels[f], k) for f in ATTRIBUTE_FACTORS]))
    return out


def pruning_table(enc: Encoder, table: list[dict], n: int = 1024, seed: int = 0) -> list[dict]:
    """The metrics of ``evaluate_synthetic`` with no head pruned, then with each set of ``prune_sets``."""
    from infogap.models.decompose import pruned_heads

    rows = [{"pruned": "none", "n_heads": 0, **evaluate_synthetic(enc, n)}]
    for name, heads in prune_sets(table, seed).items():
        if not heads:
            rows.append({"pruned": name, "n_heads": 0})
            continue
        with pruned_heads(enc.model, heads):
            rows.append({"pruned": name, "n_heads": len(heads), **evaluate_synthetic(enc, n)})
    return rows


def ccs_figure(table: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, heads = max(r["layer"] for r in table) + 1, max(r["head"] for r in table) + 1
    grid = np.zeros((layers, heads))
    for r in table:
        grid[r["layer"], r["head"]] = r["ccs"]
    fig, ax = plt.subplots(figsize=(1 + 0.45 * heads, 1 + 0.45 * layers))
    im = ax.imshow(grid, vmin=0, vmax=TEXTS_PER_HEAD, cmap="viridis")
    for r in table:
        ax.text(r["head"], r["layer"], r["label"][:3], ha="center", va="center", fontsize=6, color="w")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("CCS (label: first letters)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    return save_figure(fig, path)


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
    synthetic = enc.word_level and not args.images
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
    table = head_table(heads, pool, texts, concepts, args.m)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    total = heads.sum((1, 2))  # the heads' share of the embedding (heads + rest): its projection on the embedding
    full = total + rest
    share = float(((total * full).sum(1) / full.norm(dim=1) ** 2).mean())
    result = {"model": args.checkpoint or args.model, "pool_type": enc.model.visual.pool_type, "images": len(images),
              "texts": len(texts), "heads_share": share, "heads": table}
    if synthetic:
        result["pruning"] = pruning_table(enc, table, min(args.n, 1024), args.seed)
        with open(out / "pruning.csv", "w", newline="") as f:
            cols = list(dict.fromkeys(k for r in result["pruning"] for k in r))
            writer = csv.DictWriter(f, fieldnames=cols)
            writer.writeheader()
            writer.writerows(result["pruning"])
    (out / "heads.json").write_text(json.dumps(result, indent=1) + "\n")
    ccs_figure(table, out / "ccs.png")
    counts = np.bincount([r["ccs"] for r in table], minlength=args.m + 1)
    print(f"{len(table)} heads; CCS distribution (0..{args.m}): {counts.tolist()}; heads carry {share:.2f} of the embedding")
    for r in table:
        print(f"layer {r['layer']:2d} head {r['head']:2d}  CCS {r['ccs']}  {r['label']:<10} {', '.join(r['texts'])}")
    print(f"\nheads: {out / 'heads.json'}\nfigure: {out / 'ccs.png'}", file=sys.stderr)
    return 0


# --- infogap ablate heads: how caption richness shapes head concepts -------------------------------
ABLATION_IMAGES = 1024  # renders decomposed and evaluated per run


def run_heads(run_dir: Path) -> dict:
    """heads.json of a finished run (computed once from its last checkpoint: the exact synthetic pool,
    ``ABLATION_IMAGES`` validation renders, the pruning table)."""
    def compute() -> dict:
        enc = load_encoder(checkpoint=str(Path(run_dir) / "checkpoints" / "last.ckpt"), seed=0)
        texts, concepts, pool = synthetic_pool(enc)
        images = enc.source.val_batch(np.arange(ABLATION_IMAGES))["image"]
        table = head_table(contributions(enc, images)[0], pool, texts, concepts)
        return {"heads": table, "pruning": pruning_table(enc, table, ABLATION_IMAGES)}

    key = {"images": ABLATION_IMAGES, "m": TEXTS_PER_HEAD, "seed": 0}
    return cached_json(Path(run_dir) / "heads.json", key, compute)


def rows(run, record):
    """One row per run: the CCS distribution, the share of heads labelled with each factor, and per
    pruned set the drop in object and mean attribute accuracy (none minus pruned)."""
    from infogap.data.factors import ATTRIBUTE_FACTORS, FACTOR_NAMES

    result = run_heads(run.dir)
    table = result["heads"]
    row = dict(record["metrics"])
    row["ccs_mean"] = float(np.mean([h["ccs"] for h in table]))
    row["heads_high_ccs"] = sum(h["ccs"] >= HIGH for h in table)
    row["heads_low_ccs"] = sum(h["ccs"] <= LOW for h in table)
    for f in FACTOR_NAMES:
        row[f"heads_{f}_share"] = sum(h["label"] == f for h in table) / len(table)
    pruning = {r["pruned"]: r for r in result["pruning"]}
    base = pruning["none"]

    def attr(r):
        return float(np.mean([r[f"zeroshot_{f}_acc"] for f in ATTRIBUTE_FACTORS]))

    for name in ("high", "low"):
        r = pruning.get(name, {})
        ok = bool(r.get("n_heads"))
        row[f"object_drop_{name}"] = base["zeroshot_object_acc"] - r["zeroshot_object_acc"] if ok else float("nan")
        row[f"attr_drop_{name}"] = attr(base) - attr(r) if ok else float("nan")
    randoms = [r for n, r in pruning.items() if n.startswith("random_") and r.get("n_heads")]
    row["object_drop_random"] = float(np.mean([base["zeroshot_object_acc"] - r["zeroshot_object_acc"] for r in randoms])) if randoms else float("nan")
    row["attr_drop_random"] = float(np.mean([attr(base) - attr(r) for r in randoms])) if randoms else float("nan")
    return [row]


def claims(rows, design):
    """Do the heads specialise on the always-present object when captions name only it (share of
    object-labelled heads at the smallest k minus at the largest, > 0, paired by seed)? Does pruning
    the high-CCS heads cost more accuracy than pruning the low-CCS heads and random heads of the same
    count (per seed, averaged over k; runs without a high-CCS head are left out)?"""
    import math

    from infogap.ablations.analysis import compare

    lo, hi = min(design["k"]), max(design["k"])
    out = [compare(rows, "k", lo, hi, "heads_object_share", "negative")]
    out[0].claim = f"more heads are labelled object at k={lo} than at k={hi} (the always-present word)"
    for metric in ("object", "attr"):
        for other in ("low", "random"):
            per_seed: dict[int, list[float]] = {}
            for r in rows:
                diff = r[f"{metric}_drop_high"] - r[f"{metric}_drop_{other}"]
                if not math.isnan(diff):
                    per_seed.setdefault(r["seed"], []).append(diff)
            what = "object" if metric == "object" else "mean attribute"
            out.append(paired_claim(f"pruning the high-CCS heads costs more {what} accuracy than pruning the {other} heads (mean over k)",
                                    {s: float(np.mean(v)) for s, v in per_seed.items()}, "positive"))
    return out


def figures(ablation, runs, results):
    """Share of heads per concept label and the CCS distribution, per k (means over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from infogap.data.factors import FACTOR_NAMES

    done = [r for r in runs if r.stage == ablation.report_stage and r.finished and (r.dir / "heads.json").is_file()]
    if not done:
        return []
    ks = sorted({r.axes["k"] for r in done})
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.4))
    labels = {k: [] for k in ks}
    ccs = {k: [] for k in ks}
    for r in done:
        table = json.loads((r.dir / "heads.json").read_text())["heads"]
        labels[r.axes["k"]].append([sum(h["label"] == f for h in table) / len(table) for f in FACTOR_NAMES])
        ccs[r.axes["k"]].append(np.bincount([h["ccs"] for h in table], minlength=TEXTS_PER_HEAD + 1) / len(table))
    bottom = np.zeros(len(ks))
    for i, f in enumerate(FACTOR_NAMES):
        share = np.array([np.mean(labels[k], 0)[i] for k in ks])
        axs[0].bar(ks, share, bottom=bottom, label=f, color=f"C{i}")
        bottom += share
    axs[0].set_title("heads labelled with each factor", fontsize=9)
    bottom = np.zeros(len(ks))
    for c in range(1, TEXTS_PER_HEAD + 1):
        share = np.array([np.mean(ccs[k], 0)[c] for k in ks])
        axs[1].bar(ks, share, bottom=bottom, label=f"CCS {c}", color=plt.cm.viridis(c / TEXTS_PER_HEAD))
        bottom += share
    axs[1].set_title("CCS distribution", fontsize=9)
    for ax in axs:
        ax.set_xlabel("k (attributes named in captions)")
        ax.legend(fontsize=6)
    return [save_figure(fig, results / "heads_by_k.png")]
