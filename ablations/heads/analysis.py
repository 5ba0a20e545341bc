"""The attention-head analysis of one model (Madasu et al., EMNLP 2025): the text pool (exact for the synthetic world,
or given), every head's direct contributions over a set of images, its TEXTSPAN texts, concept label
and CCS, and what pruning sets of heads costs (zero-shot accuracy, MOAD, MaxSkew)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from infogap.ablations.kit.results import save_figure
from infogap.train import metrics as M
from infogap.train.embed import BATCH, Encoder

TEXTS_PER_HEAD = 5  # the published CCS uses 5 TEXTSPAN texts per head
HIGH, LOW = 5, 1  # high-CCS heads: CCS = 5; low-CCS heads: CCS <= 1 (the published thresholds, on the raw CCS)
RANDOM_DRAWS = 5
PRUNE_SIZE = 8  # heads per pruned set (high, low, random, per concept)


def synthetic_pool(enc: Encoder, texts_per_concept: int = 10, kind: str = "balanced") -> tuple[list[str], list[str], torch.Tensor]:
    """(texts, concepts, embeddings) of the synthetic world, each text's concept its factor.

    ``balanced`` (default): every concept the same number of texts, ``texts_per_concept`` (at most 10,
    the number of objects), each a caption the models saw in training: an object is its word alone
    (a k = 0 caption); an attribute value is named beside an object word ("3, red", the object word
    always present in every training caption), its values cycling and the object words varying over
    the concept's texts, so that every concept can reach CCS = 5 and the label shares are not the
    pool's composition. ``values``: each factor value once, its word alone (object 10 texts, colour 7,
    thickness 3, the others 2: a swelling head can never reach CCS = 5)."""
    from infogap.data.factors import FACTORS, OBJECT

    texts, concepts = [], []
    if kind == "values":
        for factor, values in FACTORS.items():
            texts += list(values)
            concepts += [factor] * len(values)
    elif kind == "balanced":
        objects = FACTORS[OBJECT]
        if not 1 <= texts_per_concept <= len(objects):
            raise ValueError(f"texts_per_concept must be in 1..{len(objects)} (one text per object word), got {texts_per_concept}")
        for f, (factor, values) in enumerate(FACTORS.items()):
            for i in range(texts_per_concept):
                texts.append(objects[i] if factor == OBJECT else f"{objects[(i + 3 * f) % len(objects)]}, {values[i % len(values)]}")
                concepts.append(factor)
    else:
        raise ValueError(f"pool kind must be 'balanced' or 'values', got {kind!r}")
    return texts, concepts, torch.from_numpy(enc.texts(enc.tokenize(texts)))


def text_values(texts: list[str]) -> list[str]:
    """The value each pool text names: its last comma-separated word ("3, red" -> "red"; "3" -> "3")."""
    return [t.split(",")[-1].strip() for t in texts]


@torch.no_grad()
def reachable_ccs(pool: torch.Tensor, texts: list[str], concepts: list[str], m: int = TEXTS_PER_HEAD, images: int = 400,
                  noise: float = 0.01, repeats: int = 5, head_width: Optional[int] = None, seed: int = 0) -> dict[str, float]:
    """Per concept, the CCS that TEXTSPAN (``textspan``, as the study runs it) gives a **pure** head of it,
    averaged over ``repeats`` simulated heads: the head's contribution for an image is the mean pool
    embedding of the texts naming the image's value of the concept (values drawn uniformly over
    ``images`` images), plus Gaussian noise of ``noise`` times the embeddings' mean norm. A concept whose
    pure heads stay below ``m`` cannot reach CCS = m on this pool, whatever the model: its texts span
    too few directions (TEXTSPAN removes each chosen text's direction from the others, and a pure head
    of a concept with V values varies along at most V - 1 of them)."""
    from infogap.ablations.heads.textspan import AUTHORS_RANK, textspan

    rank = min(AUTHORS_RANK, head_width) if head_width else AUTHORS_RANK
    gen = torch.Generator().manual_seed(seed)
    emb = pool.double()
    scale = noise * float(emb.norm(dim=1).mean())
    values = text_values(texts)
    out = {}
    for concept in dict.fromkeys(concepts):
        names = list(dict.fromkeys(v for v, c in zip(values, concepts) if c == concept))
        means = torch.stack([emb[[i for i, (v, c) in enumerate(zip(values, concepts)) if c == concept and v == name]].mean(0) for name in names])
        if float((means - means.mean(0)).abs().max()) <= 1e-12:  # every value embeds alike: a head of it cannot vary
            out[concept] = 0.0
            continue
        scores = []
        for _ in range(repeats):
            labels = torch.randint(len(names), (images,), generator=gen)
            head = means[labels] + scale * torch.randn(images, emb.shape[1], generator=gen, dtype=torch.float64)
            idx, _ = textspan(head, emb, m=m, rank=rank)
            scores.append(sum(concepts[j] == concept for j in idx))
        out[concept] = float(np.mean(scores))
    return out


def pool_shares(concepts: list[str]) -> dict[str, float]:
    """Each concept's share of the text pool (what the label shares are compared against)."""
    return {c: concepts.count(c) / len(concepts) for c in dict.fromkeys(concepts)}


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


def factor_r2(contribution: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """The ground truth of a head: per factor, the share of the variance of its contributions C (N, d)
    that the factor's labels explain, R² = between-class sum of squares / total sum of squares, summed
    over the d dimensions (the R² of a one-hot regression), from class sums in O(N d)."""
    c = contribution.double()
    mean = c.mean(0)
    total = float(((c - mean) ** 2).sum())
    out = {}
    for factor, lab in labels.items():
        lab = torch.as_tensor(lab).long()
        k = int(lab.max()) + 1
        counts = torch.bincount(lab, minlength=k).double()
        sums = torch.zeros(k, c.shape[1], dtype=torch.float64).index_add_(0, lab, c)
        present = counts > 0
        between = float(((sums[present] / counts[present, None] - mean) ** 2 * counts[present, None]).sum())
        out[factor] = between / total if total > 0 else float("nan")
    return out


def head_table(heads: torch.Tensor, pool: torch.Tensor, texts: list[str], concepts: list[str], m: int = TEXTS_PER_HEAD,
               labels: Optional[dict[str, torch.Tensor]] = None, head_width: Optional[int] = None, variant: str = "published") -> list[dict]:
    """Per (layer, head): its TEXTSPAN texts (rank: the authors' 80, capped by ``head_width``) with the
    variance each explains, its concept label and CCS; with the images' factor ``labels``, its ground
    truth: each factor's R² (``factor_r2``), the true concept (the factor with the largest R²) and
    whether the TEXTSPAN label agrees with it."""
    from infogap.ablations.heads.textspan import AUTHORS_RANK, concept_consistency, textspan

    rank = min(AUTHORS_RANK, head_width) if head_width else AUTHORS_RANK
    table = []
    for layer in range(heads.shape[1]):
        for head in range(heads.shape[2]):
            contribution = heads[:, layer, head]
            idx, shares = textspan(contribution, pool, m=m, rank=rank, variant=variant)
            label, ccs = concept_consistency([concepts[j] for j in idx]) if idx else ("", 0)
            row = {"layer": layer, "head": head, "texts": [texts[j] for j in idx], "concepts": [concepts[j] for j in idx],
                   "variance_explained": shares, "label": label, "ccs": ccs}
            if labels is not None:
                r2 = factor_r2(contribution, labels)
                true = max(r2, key=lambda f: -1.0 if np.isnan(r2[f]) else r2[f])
                row.update({"r2": r2, "true_label": true, "true_r2": r2[true], "agrees": label == true})
            table.append(row)
    return table


def normalised_ccs(row: dict, reachable: dict[str, float]) -> float:
    """A head's CCS over what a pure head of its concept reaches on this pool (``reachable_ccs``), at most
    1: a binary factor's pure heads reach about 2.6 of 5, so its CCS of 3 is as consistent as a colour
    head's 5. NaN for a concept no pure head can vary along; 0 for a head without a label."""
    if not row["label"]:
        return 0.0
    top = reachable.get(row["label"], float("nan"))
    return min(1.0, row["ccs"] / top) if top > 0 else float("nan")


def consistency_toward(row: dict, concept: str, reachable: dict[str, float]) -> float:
    """How many of a head's TEXTSPAN texts name ``concept``, over what a pure head of it reaches, at most 1."""
    top = reachable.get(concept, float("nan"))
    return min(1.0, sum(c == concept for c in row["concepts"]) / top) if top > 0 else float("nan")


def prune_sets(table: list[dict], reachable: dict[str, float], size: int = PRUNE_SIZE, seed: int = 0) -> dict[str, list[tuple[int, int]]]:
    """The head sets pruned, each of ``size`` heads (at most half the heads):

    - ``high`` and ``low``: the heads of the highest and the lowest normalised CCS (``normalised_ccs``;
      ties: the larger, then the smaller share of variance the head's texts explain), the paper's
      high- against low-CCS comparison;
    - ``random_0`` ...: ``RANDOM_DRAWS`` random sets (from ``seed``);
    - per concept c, ``high_<c>``: the heads most consistent with c (``consistency_toward``; ties: the
      variance its c texts explain), whose pruning is scored on c's task; with the ground truth,
      ``truth_<c>``: the heads whose contributions c explains most (R², ``factor_r2``);
    - the positive control: every head whose ground-truth concept is colour (``gt_colour``) and random
      heads of that count (``random_colour_0`` ...)."""
    key = lambda r: (r["layer"], r["head"])  # noqa: E731
    size = max(1, min(size, len(table) // 2))
    rng = random.Random(seed)
    everyone = [key(r) for r in table]

    def nan_low(v: float) -> float:
        return -1.0 if np.isnan(v) else v

    def explained(r, concept=None):
        return float(sum(v for v, c in zip(r["variance_explained"], r["concepts"]) if concept is None or c == concept))

    by_ccs = sorted(table, key=lambda r: (-nan_low(normalised_ccs(r, reachable)), -explained(r), r["layer"], r["head"]))
    sets = {"high": [key(r) for r in by_ccs[:size]], "low": [key(r) for r in by_ccs[::-1][:size]]}
    for i in range(RANDOM_DRAWS):
        sets[f"random_{i}"] = rng.sample(everyone, size)
    for concept in reachable:
        ranked = sorted(table, key=lambda r: (-nan_low(consistency_toward(r, concept, reachable)), -explained(r, concept), r["layer"], r["head"]))
        sets[f"high_{concept}"] = [key(r) for r in ranked[:size]]
        if table and "r2" in table[0]:
            truth = sorted(table, key=lambda r: (-nan_low(r["r2"].get(concept, float("nan"))), r["layer"], r["head"]))
            sets[f"truth_{concept}"] = [key(r) for r in truth[:size]]
    if table and "true_r2" in table[0]:
        sets["gt_colour"] = [key(r) for r in table if r["true_label"] == "colour"]
        for i in range(RANDOM_DRAWS):
            sets[f"random_colour_{i}"] = rng.sample(everyone, len(sets["gt_colour"]))
    return sets


@torch.no_grad()
def evaluation_set(enc: Encoder, n: int = 1024) -> dict:
    """What ``evaluate`` scores against, computed once: ``n`` validation renders (``images``), their full
    captions' embeddings, factor labels, class embeddings (full-description prompts) and the neutral
    object-only queries of MaxSkew."""
    from infogap.data.factors import FACTOR_NAMES, OBJECT
    from infogap.train.evaluation import class_embeddings

    batch = enc.source.val_batch(np.arange(n))
    embed = lambda tokens: torch.from_numpy(enc.texts(tokens)).double()  # noqa: E731
    return {"images": enc.rendered(batch["image"]), "text": embed(batch["text_full"]),
            "labels": {f: batch["labels"][f].numpy() for f in FACTOR_NAMES},
            "classes": {f: class_embeddings(embed, enc.source.class_prompts(f, 8, "full")) for f in FACTOR_NAMES},
            "neutral": embed(enc.source.class_prompts(OBJECT, 1, "word")[:, 0])}


def evaluate(x: torch.Tensor, data: dict, k: int = 50) -> dict[str, float]:
    """Zero-shot accuracy per factor, MOAD (image) and MaxSkew@k of the object-only prompts over each
    attribute factor (mean), of image embeddings ``x`` (normalised here) on the ``evaluation_set``."""
    from infogap.data.factors import ATTRIBUTE_FACTORS
    from infogap.train.metrics import compute_metrics

    x = M.normalize(M.as_tensor(x).double())
    out = compute_metrics(x, data["text"], data["labels"], class_embeddings=data["classes"], metrics=["zeroshot", "moad_image"])
    out["max_skew"] = float(np.mean([max_skew(x, data["neutral"], data["labels"][f], k) for f in ATTRIBUTE_FACTORS]))
    return out


@torch.no_grad()
def evaluate_synthetic(enc: Encoder, n: int = 1024, k: int = 50) -> dict[str, float]:
    """``evaluate`` of the model's own image embeddings on ``n`` validation renders."""
    data = evaluation_set(enc, n)
    return evaluate(torch.from_numpy(enc.images(data["images"])), data, k)


def mean_ablated(heads: torch.Tensor, rest: torch.Tensor, pruned: list[tuple[int, int]]) -> torch.Tensor:
    """Un-normalised image embeddings with the direct contribution of each ``pruned`` head replaced by its
    mean over the images (mean-ablation, as the decomposition papers do): embedding - c_h + mean(c_h).
    The embeddings' mean is unchanged; only the pruned heads' direct terms are."""
    full = rest + heads.sum((1, 2))
    for layer, head in pruned:
        c = heads[:, layer, head]
        full = full - c + c.mean(0, keepdim=True)
    return full


def pruning_table(enc: Encoder, table: list[dict], reachable: dict[str, float], n: int = 1024, seed: int = 0,
                  size: int = PRUNE_SIZE) -> list[dict]:
    """``evaluate`` with no head pruned, then with each set of ``prune_sets`` (``size`` heads) removed in both modes:
    ``zero`` (the CCS study's protocol: the heads' slice of the attention output projection set to 0,
    so every later layer sees it) and ``mean`` (the decomposition papers': each head's direct
    contribution to the embedding replaced by its mean over the images)."""
    from infogap.models.decompose import pruned_heads

    data = evaluation_set(enc, n)
    heads, rest = contributions(enc, data["images"])
    rows = [{"pruned": "none", "mode": "none", "n_heads": 0, **evaluate(torch.from_numpy(enc.images(data["images"])), data)}]
    for name, chosen in prune_sets(table, reachable, size, seed).items():
        if not chosen:
            rows += [{"pruned": name, "mode": mode, "n_heads": 0} for mode in ("zero", "mean")]
            continue
        with pruned_heads(enc.model, chosen):
            rows.append({"pruned": name, "mode": "zero", "n_heads": len(chosen), **evaluate(torch.from_numpy(enc.images(data["images"])), data)})
        rows.append({"pruned": name, "mode": "mean", "n_heads": len(chosen), **evaluate(mean_ablated(heads, rest, chosen), data)})
    return rows


def heads_share(heads: torch.Tensor, rest: torch.Tensor) -> float:
    """The heads' share of the image embedding: the mean projection of their summed direct contributions
    on the embedding (heads + rest), over its squared norm."""
    total = heads.sum((1, 2))
    full = total + rest
    return float(((total * full).sum(1) / full.norm(dim=1) ** 2).mean())


def head_width(enc: Encoder) -> int:
    """The width of one attention head of the model's image tower."""
    attn = enc.model.visual.transformer.resblocks[0].attn
    return attn.embed_dim // attn.num_heads


def synthetic_analysis(enc: Encoder, images: int = 1024, texts_per_concept: int = 10, pool_kind: str = "balanced", m: int = TEXTS_PER_HEAD,
                       variant: str = "published", size: int = PRUNE_SIZE, confound_pool: Optional[str] = "values", seed: int = 0) -> dict:
    """The whole analysis of a synthetic model: the pool; ``images`` validation renders decomposed; every
    head's TEXTSPAN texts, label, CCS, normalised CCS and ground truth (``head_table``); the CCS a pure head
    of each concept reaches on the model's own pool (``reachable``); each head's label over the
    ``confound_pool`` too (``values``: each value's word alone, no object word beside an attribute: does
    the object word in the balanced pool's attribute texts move the labels?); and the pruning table."""
    texts, concepts, pool = synthetic_pool(enc, texts_per_concept, pool_kind)
    batch = enc.source.val_batch(np.arange(images))
    heads, rest = contributions(enc, batch["image"])
    width = head_width(enc)
    table = head_table(heads, pool, texts, concepts, m, labels=batch["labels"], head_width=width, variant=variant)
    reachable = reachable_ccs(pool, texts, concepts, m, head_width=width, seed=seed)
    for row in table:
        row["ccs_norm"] = normalised_ccs(row, reachable)
    out = {"heads": table, "pool": {"texts": texts, "concepts": concepts, "shares": pool_shares(concepts)}, "reachable": reachable,
           "heads_share": heads_share(heads, rest)}
    if confound_pool:
        texts2, concepts2, pool2 = synthetic_pool(enc, texts_per_concept, confound_pool)
        other = head_table(heads, pool2, texts2, concepts2, m, head_width=width, variant=variant)
        out["confound"] = {"pool": confound_pool, "labels": [r["label"] for r in other],
                           "same_label": float(np.mean([a["label"] == b["label"] for a, b in zip(table, other)]))}
    out["pruning"] = pruning_table(enc, table, reachable, images, seed, size)
    return out


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
