"""The Inter-Intra Modal Measure (Niss, Vogt-Lowell, Tsiligkaridis, arXiv 2407.15731;
docs/results/learn_forget.md): for unit image embeddings x with class-prompt embeddings y and true labels y(x),

    S_inter = mean_x mean_{y' != y(x)} x^T y'    (similarity to the wrong classes' prompts),
    S_intra = mean over pairs i < j of x_i^T x_j,
    IIMM = (S_inter + S_intra) / 2,

from sums in O(N d C) (the metric suite's streaming pass for S_intra)."""
from __future__ import annotations

import torch

from infogap.train import metrics as M


def iimm_parts(x, prompts, labels) -> tuple[float, float]:
    """The two halves of the Inter-Intra Modal Measure (Niss et al. 2024), for unit image embeddings x,
    class-prompt embeddings y_c and true labels y(x):
    S_inter = mean_x mean_{c != y(x)} <x, y_c> (similarity to the wrong classes' prompts), O(N·d·C)
    through the sum of the prompts; S_intra = mean over pairs i < j of <x_i, x_j>, O(N·d) through
    the sum and the squared norms of x."""
    x, p, lab = M.as_tensor(x), M.as_tensor(prompts).double(), M.as_labels(labels)
    c = p.shape[0]
    if c < 2:
        raise ValueError("IIMM needs at least two class prompts")
    m = M.moments(x, x)
    sims = torch.zeros(len(x), dtype=torch.float64)
    total = p.sum(0)
    for sl in M.row_chunks(len(x), M.ROW_CHUNK):
        xc = x[sl].double()
        sims[sl] = (xc @ total - (xc * p[lab[sl]]).sum(1)) / (c - 1)
    return float(sims.mean()), M.off_diagonal_mean(m.sum_x, m.sq_x, m.n)


def iimm(x, prompts, labels) -> float:
    """Inter-Intra Modal Measure (Niss et al. 2024): IIMM = (S_inter + S_intra) / 2 (``iimm_parts``)."""
    inter, intra = iimm_parts(x, prompts, labels)
    return (inter + intra) / 2
