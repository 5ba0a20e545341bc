"""The attention-head analysis of one model (seed 004): the text pool (exact for the synthetic world,
or given), every head's direct contributions over a set of images, its TEXTSPAN texts, concept label
and CCS, and what pruning sets of heads costs (zero-shot accuracy, MOAD, MaxSkew)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from infogap.ablations.runner.results import save_figure
from infogap.train import metrics as M
from infogap.train.embed import BATCH, Encoder

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
    from infogap.ablations.heads.textspan import concept_consistency, textspan

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
    from infogap.train.metrics import compute_metrics

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


def max_skew(images, queries, labels, k: int = 100) -> float:
    """MaxSkew@k (Geyik et al. 2019), the retrieval bias of neutral queries: for each query, the top-k
    images by cosine similarity; skew_v = log(p_v / q_v), p_v the share of factor value v among them and
    q_v its share among all images; MaxSkew = max_v skew_v, averaged over the queries. 0: every query
    retrieves the set's own mix; log(1 / q_v) at most (only value v retrieved)."""
    x, qr, lab = M.normalize(M.as_tensor(images).double()), M.normalize(M.as_tensor(queries).double()), M.as_labels(labels)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"MaxSkew@k needs 1 <= k <= {n} images, got k={k}")
    n_values = int(lab.max()) + 1
    q = torch.bincount(lab, minlength=n_values).double() / n
    top = (qr @ x.T).topk(k, dim=1).indices  # (Q, k)
    p = torch.nn.functional.one_hot(lab[top], n_values).double().mean(1)  # (Q, V)
    present = q > 0
    skew = torch.log(p[:, present] / q[present])  # -inf for a value no query retrieves
    return float(skew.max(1).values.mean())
