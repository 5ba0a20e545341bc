"""Representation metrics of a contrastive VLM (definitions: Schrodi et al., "Two Effects, One Trigger", ICLR 2025; docs/results/core.md).

Inputs are L2-normalised image embeddings ``x`` (N, d) and text embeddings ``y`` (N, d), row i of
``y`` matching row i of ``x``, plus integer labels per factor. Functions take torch tensors or
numpy arrays and never modify them.

Speed and exactness:
- everything expressible through sums (L2M, L2I, RMG, alignment, MOAD, IIMM, gap dimensions) comes
  from one streaming pass of float64 sums in O(N d): sum_{i != j} <x_i, x_j> = ||sum x||^2 - sum ||x_i||^2;
- pairwise quantities (logit entropy, uniformity, retrieval) stream over row chunks of the N x N
  similarity matrix, so memory stays O(chunk x N); accumulation is float64, the matrix products
  use the input precision (float64 inputs give float64 results end to end).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import torch

RECALL_KS = (1, 5, 10)
GAP_TOP_NS = (1, 2, 5, 10)
ROW_CHUNK = 65_536  # rows per chunk of the O(N d) pass
PAIR_TILE = 1024  # rows and columns of one tile of a pairwise matrix (4 MiB in float32)
PROGRESS_MIN_ROWS = 100_000  # show a progress bar (stderr) for passes over at least this many rows


def as_tensor(a) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    return t if t.is_floating_point() else t.double()


def as_labels(a) -> torch.Tensor:
    return (a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))).long()


def row_chunks(n: int, size: int, desc: Optional[str] = None) -> Iterable[slice]:
    """Row slices of at most ``size``; with ``desc``, a progress bar when ``n >= PROGRESS_MIN_ROWS``."""
    starts = range(0, n, max(1, size))
    if desc is not None and n >= PROGRESS_MIN_ROWS:
        from tqdm import tqdm

        starts = tqdm(starts, desc=desc, unit="chunk", leave=False, file=sys.stderr)
    for start in starts:
        yield slice(start, min(n, start + size))


def normalize(z) -> torch.Tensor:
    """Rows scaled to unit L2 norm (a new tensor)."""
    z = as_tensor(z)
    return z / z.norm(dim=1, keepdim=True).clamp(min=1e-12)


def is_normalized(z, atol: float = 1e-3) -> bool:
    z = as_tensor(z)
    for sl in row_chunks(len(z), ROW_CHUNK):
        if not torch.allclose(z[sl].double().norm(dim=1), torch.ones(sl.stop - sl.start, dtype=torch.float64), atol=atol):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# One pass of sums.
@dataclass
class ClassSums:
    count: torch.Tensor  # (C,)
    sum_x: torch.Tensor  # (C, d)
    sq_x: torch.Tensor  # (C,)  sum of ||x_i||^2 in the class
    sum_y: Optional[torch.Tensor] = None
    sq_y: Optional[torch.Tensor] = None


@dataclass
class Moments:
    """Float64 sums over matched pairs, from one streaming O(N d) pass."""

    n: int
    sum_x: torch.Tensor
    sum_y: torch.Tensor
    sq_x: float  # sum ||x_i||^2
    sq_y: float
    dot: float  # sum <x_i, y_i>
    dist: float  # sum ||x_i - y_i||
    classes: dict[str, ClassSums] = field(default_factory=dict)


def moments(x, y, labels: Optional[Mapping[str, object]] = None, chunk: int = ROW_CHUNK) -> Moments:
    """The sums every O(N d) metric is a function of (class sums per factor in ``labels``)."""
    x, y = as_tensor(x), as_tensor(y)
    n, d = x.shape
    labels = {f: as_labels(v) for f, v in (labels or {}).items()}
    acc = dict(sum_x=torch.zeros(d, dtype=torch.float64), sum_y=torch.zeros(d, dtype=torch.float64))
    sq_x = sq_y = dot = dist = 0.0
    classes = {}
    for f, lab in labels.items():
        c = int(lab.max()) + 1 if len(lab) else 0
        classes[f] = ClassSums(
            count=torch.bincount(lab, minlength=c).double(),
            sum_x=torch.zeros(c, d, dtype=torch.float64), sq_x=torch.zeros(c, dtype=torch.float64),
            sum_y=torch.zeros(c, d, dtype=torch.float64), sq_y=torch.zeros(c, dtype=torch.float64),
        )
    for sl in row_chunks(n, chunk, desc="metrics: sums"):
        xc, yc = x[sl].double(), y[sl].double()
        acc["sum_x"] += xc.sum(0)
        acc["sum_y"] += yc.sum(0)
        nx, ny, dots = torch.einsum("ij,ij->i", xc, xc), torch.einsum("ij,ij->i", yc, yc), torch.einsum("ij,ij->i", xc, yc)
        sq_x += float(nx.sum())
        sq_y += float(ny.sum())
        dot += float(dots.sum())
        dist += float((nx + ny - 2 * dots).clamp_(min=0).sqrt_().sum())  # ||x_i - y_i|| without an (m, d) temporary
        for f, lab in labels.items():
            cs = classes[f]
            onehot = torch.zeros(len(cs.count), sl.stop - sl.start, dtype=torch.float64)
            onehot[lab[sl], torch.arange(sl.stop - sl.start)] = 1.0
            cs.sum_x += onehot @ xc  # class sums as one small GEMM
            cs.sum_y += onehot @ yc
            cs.sq_x += onehot @ nx
            cs.sq_y += onehot @ ny
    return Moments(n, acc["sum_x"], acc["sum_y"], sq_x, sq_y, dot, dist, classes)


def off_diagonal_mean(total_sum: torch.Tensor, total_sq: float, n: int) -> float:
    """Mean of <z_i, z_j> over ordered pairs i != j, from sum z and sum ||z_i||^2."""
    if n < 2:
        return float("nan")
    return (float(total_sum @ total_sum) - total_sq) / (n * (n - 1))


# ---------------------------------------------------------------------------------------------
# O(N d) metrics.
def l2m(x=None, y=None, *, stats: Optional[Moments] = None) -> float:
    """L2M = || mean_i x_i - mean_i y_i ||_2 (the modality gap as a distance between centroids)."""
    m = stats or moments(x, y)
    return float(((m.sum_x - m.sum_y) / m.n).norm())


def l2i(x=None, y=None, *, stats: Optional[Moments] = None) -> float:
    """L2I = mean over matched pairs of || x_i - y_i ||_2."""
    m = stats or moments(x, y)
    return m.dist / m.n


def alignment(x=None, y=None, *, stats: Optional[Moments] = None) -> float:
    """Alignment (Wang & Isola) = mean over matched pairs of || x_i - y_i ||^2."""
    m = stats or moments(x, y)
    return (m.sq_x + m.sq_y - 2 * m.dot) / m.n


def relative_modality_gap(x=None, y=None, *, stats: Optional[Moments] = None) -> float:
    """RMG = A / (A + (B_img + B_txt) / 2) with d(u, v) = (1 - <u, v>) / 2,
    A = mean_i d(x_i, y_i), B_img = mean_{i != j} d(x_i, x_j), B_txt = mean_{i != j} d(y_i, y_j).
    0 when images and texts all coincide (A + B below 1e-12: float64 rounding, not a gap)."""
    m = stats or moments(x, y)
    a = max(0.0, (1 - m.dot / m.n) / 2)
    b_img = max(0.0, (1 - off_diagonal_mean(m.sum_x, m.sq_x, m.n)) / 2)
    b_txt = max(0.0, (1 - off_diagonal_mean(m.sum_y, m.sq_y, m.n)) / 2)
    denom = a + (b_img + b_txt) / 2
    return 0.0 if denom < 1e-12 else a / denom


def _match_non_match(cs: ClassSums, total_sum: torch.Tensor, total_sq: float, n: int, modality: str) -> tuple[float, float]:
    """(S_match, S_non): pair-weighted mean similarity over ordered pairs i != j with equal / different labels."""
    sums, sq = (cs.sum_x, cs.sq_x) if modality == "x" else (cs.sum_y, cs.sq_y)
    same_sum = float(((sums * sums).sum(1) - sq).sum())
    same_pairs = float((cs.count * (cs.count - 1)).sum())
    all_sum = float(total_sum @ total_sum) - total_sq
    all_pairs = float(n) * (n - 1)
    diff_pairs = all_pairs - same_pairs
    s_match = same_sum / same_pairs if same_pairs > 0 else float("nan")
    s_non = (all_sum - same_sum) / diff_pairs if diff_pairs > 0 else float("nan")
    return s_match, s_non


def moad(z=None, labels: Optional[Mapping[str, object]] = None, object_factor: str = "object", *, stats: Optional[Moments] = None, modality: str = "x") -> dict[str, float]:
    """MOAD (object bias) per attribute factor a:
    (S_obj^match - S_obj^non) - (S_a^match - S_a^non), where S^match is the pair-weighted mean cosine
    similarity of samples sharing a label and S^non that of samples with different labels (all
    ordered pairs i != j). Returns ``{factor: value}`` and ``mean`` over factors. > 0: object-biased.
    NaN for a factor without any same-label (or different-label) pair."""
    if stats is None:
        stats = moments(z, z, labels)
    if object_factor not in stats.classes:
        raise ValueError(f"MOAD needs labels of the object factor {object_factor!r}; have: {', '.join(stats.classes) or 'none'}")
    total_sum, total_sq = (stats.sum_x, stats.sq_x) if modality == "x" else (stats.sum_y, stats.sq_y)
    om, on = _match_non_match(stats.classes[object_factor], total_sum, total_sq, stats.n, modality)
    out = {}
    for f, cs in stats.classes.items():
        if f == object_factor:
            continue
        am, an = _match_non_match(cs, total_sum, total_sq, stats.n, modality)
        out[f] = (om - on) - (am - an)
    out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out


def gap_dimensions(x=None, y=None, *, stats: Optional[Moments] = None) -> torch.Tensor:
    """Delta_k = | mean_i x_ik - mean_j y_jk | per embedding dimension (float64, (d,))."""
    m = stats or moments(x, y)
    return ((m.sum_x - m.sum_y) / m.n).abs()


def gap_top_share(x=None, y=None, ns: Sequence[int] = GAP_TOP_NS, *, stats: Optional[Moments] = None) -> dict[int, float]:
    """Share of ||mean x - mean y||^2 carried by the top-n dimensions ranked by Delta_k."""
    delta2 = gap_dimensions(stats=stats or moments(x, y)) ** 2
    total = float(delta2.sum())
    ranked = torch.sort(delta2, descending=True).values.cumsum(0)
    return {n: (float(ranked[min(n, len(ranked)) - 1]) / total if total > 0 else 0.0) for n in ns}


def remove_gap_dims(x, y, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the top-n gap dimensions (by Delta_k) in both modalities, then re-normalise (new tensors)."""
    x, y = as_tensor(x), as_tensor(y)
    if n <= 0:
        return x.clone(), y.clone()
    top = torch.sort(gap_dimensions(x, y), descending=True).indices[:n]
    keep = torch.ones(x.shape[1], dtype=torch.bool)
    keep[top] = False
    return normalize(x * keep.to(x.dtype)), normalize(y * keep.to(y.dtype))


def zero_shot_accuracy(x, class_embeddings, labels) -> float:
    """Accuracy of classifying each image as the class whose embedding is most similar."""
    x, c, lab = as_tensor(x), as_tensor(class_embeddings), as_labels(labels)
    correct = 0
    for sl in row_chunks(len(x), ROW_CHUNK):
        correct += int(((x[sl] @ c.to(x.dtype).T).argmax(1) == lab[sl]).sum())
    return correct / len(x)


def neighbourhood_kendall_distance(image_class_means, class_prompts) -> float:
    """Per class c, the Kendall-tau distance (fraction of discordant pairs) between the ranking of the
    other classes by cosine similarity of image class means and by similarity of class prompts,
    averaged over classes. ~0.5: unrelated neighbourhoods; 0: identical rankings."""
    a, b = normalize(as_tensor(image_class_means).double()), normalize(as_tensor(class_prompts).double())
    sa, sb = a @ a.T, b @ b.T
    c = len(a)
    if c < 3:
        raise ValueError("neighbourhood agreement needs at least three classes")
    dists = []
    for k in range(c):
        others = [j for j in range(c) if j != k]
        u, v = sa[k, others], sb[k, others]
        du, dv = u[:, None] - u[None, :], v[:, None] - v[None, :]
        iu = torch.triu_indices(len(others), len(others), 1)
        discordant = ((du[iu[0], iu[1]] * dv[iu[0], iu[1]]) < 0).double()
        dists.append(float(discordant.mean()))
    return float(np.mean(dists))


# ---------------------------------------------------------------------------------------------
# Pairwise metrics, streamed over square tiles of the N x N matrix (small enough to stay in cache).
def _logaddexp(a: float, b: float) -> float:
    return float(np.logaddexp(a, b))


class _OnlineSoftmax:
    """Per index j: a running max m_j of logits l_ij over the tiles seen so far, sum_i e^(l_ij - m_j) and
    sum_i e^(l_ij - m_j) (l_ij - m_j), so the softmax entropy log sum - wsum / sum needs one pass."""

    def __init__(self, n: int):
        self.max = torch.full((n,), -math.inf, dtype=torch.float64)
        self.sum = torch.zeros(n, dtype=torch.float64)
        self.wsum = torch.zeros(n, dtype=torch.float64)

    def update(self, idx: slice, logits: torch.Tensor, dim: int, u: torch.Tensor, e: torch.Tensor) -> None:
        """Fold in one tile of logits, reducing over ``dim`` (1: along rows, 0: along columns).
        ``u`` and ``e`` are scratch tensors of the tile's shape; one exponential per entry."""
        old = self.max[idx]
        new = torch.maximum(old, logits.amax(dim).double())
        torch.sub(logits, new.to(logits.dtype).view((-1, 1) if dim == 1 else (1, -1)), out=u)  # u = l - m <= 0
        torch.exp(u, out=e)
        finite = torch.isfinite(old)
        shift = torch.where(finite, old - new, 0.0)
        scale = torch.exp(shift) * finite
        self.wsum[idx] = scale * (self.wsum[idx] + shift * self.sum[idx]) + u.mul_(e).sum(dim).double()
        self.sum[idx] = scale * self.sum[idx] + e.sum(dim).double()
        self.max[idx] = new

    def entropy(self) -> torch.Tensor:
        return torch.log(self.sum) - self.wsum / self.sum


class _GaussianSum:
    """sum_{i, j} exp(-t ||a_i - b_j||^2) over tiles of the Gram matrix g_ij = a_i . b_j, factored as
    exp(-t|a_i|^2) exp(-t|b_j|^2) exp(2t g_ij): one exponential per entry, shifted by the Cauchy-Schwarz
    bound G >= g_ij, and two matrix-vector products per tile; tiles add up in float64. Tiles may come
    pre-scaled (``scale`` * g)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, t: float, scale: float = 1.0):
        self.t, self.scale = t, scale
        self.wa, ca = self._weights(a, t)
        self.wb, cb = self._weights(b, t)
        self.bound = float(a.double().norm(dim=1).max() * b.double().norm(dim=1).max())
        self.offset = ca + cb + 2 * t * self.bound
        self.total = 0.0

    @staticmethod
    def _weights(z: torch.Tensor, t: float) -> tuple[torch.Tensor, float]:
        """exp(-t |z_i|^2 - c) in z's dtype, with c = max_i (-t |z_i|^2), so that each entry is <= 1."""
        lw = -t * (z.double() ** 2).sum(1)
        c = float(lw.max())
        return torch.exp(lw - c).to(z.dtype), c

    def update(self, ri: slice, cj: slice, g: torch.Tensor, out: torch.Tensor, weight: float = 1.0,
               zero_diagonal: bool = False) -> None:
        """Fold in the tile g = scale * a[ri] b[cj]^T, using ``out`` as scratch."""
        torch.sub(g, self.scale * self.bound, out=out).mul_(2 * self.t / self.scale).exp_()
        if zero_diagonal:
            out.fill_diagonal_(0)
        self.total += weight * float(self.wa[ri].double() @ (out @ self.wb[cj]).double())

    def log_total(self) -> float:
        return math.log(self.total) + self.offset if self.total > 0 else -math.inf


def _tile_buffers(rows: int, cols: int, dtype: torch.dtype, count: int) -> list[torch.Tensor]:
    return [torch.empty(rows, cols, dtype=dtype) for _ in range(count)]


def _self_log_sum_exp(z: torch.Tensor, t: float) -> float:
    """log sum_{i != j} exp(-t ||z_i - z_j||^2): the upper triangle of tiles, off-diagonal ones twice."""
    n = len(z)
    acc = _GaussianSum(z, z, t)
    g_buf, out_buf = _tile_buffers(min(n, PAIR_TILE), min(n, PAIR_TILE), z.dtype, 2)
    for ri in row_chunks(n, PAIR_TILE, desc="metrics: uniformity"):
        for cj in row_chunks(n, PAIR_TILE):
            if cj.start >= ri.start:
                shape = (ri.stop - ri.start, cj.stop - cj.start)
                g = torch.mm(z[ri], z[cj].T, out=g_buf[: shape[0], : shape[1]])
                diagonal = cj.start == ri.start
                acc.update(ri, cj, g, out_buf[: shape[0], : shape[1]], weight=1.0 if diagonal else 2.0,
                           zero_diagonal=diagonal)
    return acc.log_total()


@dataclass
class CrossStats:
    """From one streamed pass over s * <x_i, y_j>: entropies, retrieval ranks, and the cross term of
    the union uniformity."""

    entropy_i2t: float
    entropy_t2i: float
    rank_i2t: torch.Tensor  # (N,) number of texts j != i with sim(i, j) >= sim(i, i)
    rank_t2i: torch.Tensor
    cross_lse: float  # log sum_{i, j} exp(-t ||x_i - y_j||^2)


def cross_stats(x, y, logit_scale: float = 100.0, t: float = 2.0) -> CrossStats:
    """One pass over the N x N image-text logits s <x_i, y_j> in square tiles; rows and columns both
    accumulate online. Entry-wise work stays in the inputs' dtype (float32 embeddings: float32
    exponentials, every exponent shifted to <= 0); per-row and per-column sums combine in float64.
    Matches are counted as float masks times a ones vector (exact below 2^24 per tile)."""
    x, y = as_tensor(x), as_tensor(y)
    n, dt = len(x), x.dtype
    s = float(logit_scale)
    xs = x * s
    tie = 4 * torch.finfo(dt).eps * s  # logits this close to the match's count as ties (against it)
    threshold = (xs * y).sum(1) - tie
    rows_sm, cols_sm = _OnlineSoftmax(n), _OnlineSoftmax(n)
    rank_i2t = torch.zeros(n, dtype=torch.float64)
    rank_t2i = torch.zeros(n, dtype=torch.float64)
    gauss = _GaussianSum(x, y, t, scale=s)
    m = min(n, PAIR_TILE)
    buffers = _tile_buffers(m, m, dt, 4)
    ones = torch.ones(m, dtype=dt)
    for ri in row_chunks(n, PAIR_TILE, desc="metrics: image-text pairs"):
        for cj in row_chunks(n, PAIR_TILE):
            r, c = ri.stop - ri.start, cj.stop - cj.start
            logits, a, b, mask = (buf[:r, :c] for buf in buffers)
            torch.mm(xs[ri], y[cj].T, out=logits)
            # retrieval: how many candidates j != i score at least the match (i, i)
            rank_i2t[ri] += (torch.ge(logits, threshold[ri, None], out=mask) @ ones[:c]).double()
            rank_t2i[cj] += (ones[:r] @ torch.ge(logits, threshold[None, cj], out=mask)).double()
            if ri == cj:
                hit = (torch.diagonal(logits) >= threshold[ri]).double()
                rank_i2t[ri] -= hit
                rank_t2i[cj] -= hit
            rows_sm.update(ri, logits, 1, a, b)  # image -> text
            cols_sm.update(cj, logits, 0, a, b)  # text -> image
            gauss.update(ri, cj, logits, a)  # union uniformity cross term
    return CrossStats(float(rows_sm.entropy().mean()), float(cols_sm.entropy().mean()), rank_i2t.long(),
                      rank_t2i.long(), gauss.log_total())


def logit_entropy(x, y, logit_scale: float = 100.0) -> tuple[float, float]:
    """Logit entropy H = mean_i ( -sum_j p_ij log p_ij ), p_ij = softmax_j(s <x_i, y_j>) over all texts
    (image -> text), and the same with the roles swapped (text -> image). ``logit_scale`` is s."""
    c = cross_stats(x, y, logit_scale)
    return c.entropy_i2t, c.entropy_t2i


def uniformity(z, t: float = 2.0) -> float:
    """Uniformity (Wang & Isola 2020) = log mean_{i != j} exp(-t ||z_i - z_j||^2), t = 2."""
    z = as_tensor(z)
    n = len(z)
    return _self_log_sum_exp(z, t) - math.log(n * (n - 1))


def uniformity_union(x, y, t: float = 2.0, *, self_x: Optional[float] = None, self_y: Optional[float] = None, cross: Optional[CrossStats] = None) -> float:
    """Uniformity of the union of image and text embeddings (2N points, all ordered pairs i != j)."""
    x, y = as_tensor(x), as_tensor(y)
    n = len(x)
    sx = self_x if self_x is not None else _self_log_sum_exp(x, t)
    sy = self_y if self_y is not None else _self_log_sum_exp(y, t)
    c = (cross or cross_stats(x, y, t=t)).cross_lse
    total = _logaddexp(_logaddexp(sx, sy), c + math.log(2))
    return total - math.log(2 * n * (2 * n - 1))


def retrieval_recall(x, y, ks: Sequence[int] = RECALL_KS, *, cross: Optional[CrossStats] = None) -> dict[str, float]:
    """Recall@K both ways: the fraction of queries whose match ranks in the top K (ties count against)."""
    c = cross or cross_stats(x, y)
    out = {}
    for k in ks:
        out[f"recall_i2t@{k}"] = float((c.rank_i2t < k).double().mean())
        out[f"recall_t2i@{k}"] = float((c.rank_t2i < k).double().mean())
    return out


# ---------------------------------------------------------------------------------------------
# The suite: what `infogap metrics` prints and the callback logs.
MOMENT_KEYS = ("l2m", "l2i", "rmg", "alignment") + tuple(f"gap_top{n}_share" for n in GAP_TOP_NS)
CROSS_KEYS = ("entropy_i2t", "entropy_t2i") + tuple(f"recall_{d}@{k}" for k in RECALL_KS for d in ("i2t", "t2i"))
UNIFORMITY_KEYS = ("uniformity_image", "uniformity_text", "uniformity_all")


def metric_keys(factors: Sequence[str] = (), object_factor: str = "object", class_factors: Sequence[str] = (),
                neighbourhood_factors: Optional[Sequence[str]] = None) -> list[str]:
    """Every key the suite can produce for these label factors and class-embedding factors
    (neighbourhood agreement only for factors with at least three classes: default all class factors)."""
    keys = list(MOMENT_KEYS) + list(UNIFORMITY_KEYS) + list(CROSS_KEYS)
    attrs = [f for f in factors if f != object_factor]
    if object_factor in factors and attrs:
        for m in ("image", "text"):
            keys += [f"moad_{m}"] + [f"moad_{m}_{f}" for f in attrs]
    keys += [f"zeroshot_{f}_acc" for f in class_factors]
    keys += [f"neighbourhood_{f}" for f in (class_factors if neighbourhood_factors is None else neighbourhood_factors)]
    return keys


def select_keys(requested: Optional[Sequence[str]], available: Sequence[str]) -> list[str]:
    """Keys named exactly, or every key starting with a given prefix (``moad``, ``recall``, ``gap``)."""
    if not requested:
        return list(available)
    out = []
    for r in requested:
        hits = [k for k in available if k == r] or [k for k in available if k.startswith(r)]
        if not hits:
            raise ValueError(f"unknown metric {r!r}; available: {', '.join(available)}")
        out += [k for k in hits if k not in out]
    return out


def compute_metrics(
    x,
    y,
    labels: Optional[Mapping[str, object]] = None,
    *,
    logit_scale: float = 100.0,
    object_factor: str = "object",
    class_embeddings: Optional[Mapping[str, object]] = None,
    metrics: Optional[Sequence[str]] = None,
) -> dict[str, float]:
    """The metric suite on normalised ``x``, ``y``; only the passes the selected ``metrics`` need run."""
    labels = dict(labels or {})
    class_embeddings = dict(class_embeddings or {})
    ranked = [f for f, c in class_embeddings.items() if len(c) >= 3]  # a ranking of the other classes needs two of them
    keys = select_keys(metrics, metric_keys(list(labels), object_factor, list(class_embeddings), ranked))
    out: dict[str, float] = {}
    needs_classes = any(k.startswith(("moad", "neighbourhood")) for k in keys)
    needs_moad = any(k.startswith("moad") for k in keys)
    if any(k in MOMENT_KEYS for k in keys) or needs_classes:
        m = moments(x, y, labels if needs_classes else None)
        out.update(l2m=l2m(stats=m), l2i=l2i(stats=m), rmg=relative_modality_gap(stats=m), alignment=alignment(stats=m))
        out.update({f"gap_top{n}_share": v for n, v in gap_top_share(stats=m).items()})
        if needs_moad:
            for name, modality in (("image", "x"), ("text", "y")):
                per = moad(stats=m, object_factor=object_factor, modality=modality)
                out[f"moad_{name}"] = per.pop("mean")
                out.update({f"moad_{name}_{f}": v for f, v in per.items()})
    cross = None
    if any(k in CROSS_KEYS or k == "uniformity_all" for k in keys):
        cross = cross_stats(x, y, logit_scale)
        out.update(entropy_i2t=cross.entropy_i2t, entropy_t2i=cross.entropy_t2i)
        out.update(retrieval_recall(x, y, cross=cross))
    if any(k in UNIFORMITY_KEYS for k in keys):
        x_t, y_t = as_tensor(x), as_tensor(y)
        sx, sy = _self_log_sum_exp(x_t, 2.0), _self_log_sum_exp(y_t, 2.0)
        n = len(x_t)
        out["uniformity_image"] = sx - math.log(n * (n - 1))
        out["uniformity_text"] = sy - math.log(n * (n - 1))
        if "uniformity_all" in keys:
            out["uniformity_all"] = uniformity_union(x_t, y_t, self_x=sx, self_y=sy, cross=cross)
    for f, c in class_embeddings.items():
        if f"zeroshot_{f}_acc" in keys:
            out[f"zeroshot_{f}_acc"] = zero_shot_accuracy(x, c, labels[f])
        if f"neighbourhood_{f}" in keys:
            cs = m.classes[f]
            present = torch.zeros(len(c), dtype=torch.bool)
            present[: len(cs.count)] = cs.count > 0
            if int(present.sum()) >= 3:
                sums = torch.zeros(len(c), cs.sum_x.shape[1], dtype=torch.float64)
                sums[: len(cs.count)] = cs.sum_x
                out[f"neighbourhood_{f}"] = neighbourhood_kendall_distance(sums[present], as_tensor(c)[present])
            else:  # fewer than three classes present in the evaluation set
                out[f"neighbourhood_{f}"] = float("nan")
    return {k: out[k] for k in keys}


def check_rows(a, what: str) -> None:
    """Every row of embeddings ``a`` is finite and not all zero (a zero row has no direction: normalising
    it gives a zero or NaN embedding, and the metrics a plausible-looking wrong number), chunk by chunk."""
    t = as_tensor(a)
    for sl in row_chunks(len(t), ROW_CHUNK):
        chunk = t[sl]
        if not bool(torch.isfinite(chunk).all()):
            raise ValueError(f"{what} contains NaN or infinite values")
        zero = (chunk == 0).all(dim=1)
        if bool(zero.any()):
            first = sl.start + int(torch.nonzero(zero)[0, 0])
            raise ValueError(f"{what} has all-zero rows (the first is row {first}): a zero embedding has no direction")


def check_inputs(x, y, labels: Mapping[str, object], source: str = "input") -> None:
    """Clear errors for shape mismatch, NaN/inf or all-zero rows, and label arrays of the wrong length."""
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"{source}: 'image' and 'text' must be 2-D (N, d), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"{source}: 'image' {tuple(x.shape)} and 'text' {tuple(y.shape)} must have the same shape (row i of text matches row i of image)")
    if len(x) < 2:
        raise ValueError(f"{source}: need at least 2 rows, got {len(x)}")
    for name, a in (("image", x), ("text", y)):
        check_rows(a, f"{source}: '{name}'")
    for f, lab in labels.items():
        if len(lab) != len(x):
            raise ValueError(f"{source}: 'labels_{f}' has {len(lab)} entries, expected {len(x)} (one per row)")
        if len(lab) and int(np.min(np.asarray(lab))) < 0:
            raise ValueError(f"{source}: 'labels_{f}' has negative labels")
