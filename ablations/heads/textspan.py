"""TEXTSPAN (Gandelsman, Efros, Steinhardt, ICLR 2024) and the concept consistency score (Madasu, Lal,
Howard, EMNLP 2025): which texts span what an attention head writes into the image embedding, and
how consistent their concepts are (reference 02-other-analyses.md, section D)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch


@torch.no_grad()
def textspan(contributions: torch.Tensor, texts: torch.Tensor, m: int = 5, rank: Optional[int] = None) -> tuple[list[int], list[float]]:
    """TEXTSPAN (Gandelsman et al. 2024) for one head: its contributions C (N images, d) and a pool of
    text embeddings T (M, d). The texts are projected onto the head's output span (the top ``rank``
    principal directions of the centred C; default: all with non-zero variance); then, m times, the
    text whose (unit) projection u carries the most variance of C, u^T Sigma u with Sigma = C_c^T C_c / N,
    is chosen, and u is removed from Sigma and from every text (Sigma <- P Sigma P, T <- T P with
    P = I - u u^T). Returns the chosen text indices and the share of the head's variance each explains
    (of trace Sigma at the start; they sum to at most 1)."""
    c = contributions.double()
    c = c - c.mean(0, keepdim=True)
    sigma = c.T @ c / max(len(c), 1)
    total = float(torch.trace(sigma))
    if total <= 0:
        raise ValueError("TEXTSPAN: the head's contributions do not vary over the images")
    evals, evecs = torch.linalg.eigh(sigma)
    keep = evals > evals.max() * 1e-9
    if rank is not None:
        keep &= torch.arange(len(evals)) >= len(evals) - rank
    basis = evecs[:, keep]
    t = texts.double() @ basis @ basis.T
    chosen, shares = [], []
    for _ in range(min(m, len(t))):
        norms = t.norm(dim=1)
        u_all = t / norms.clamp(min=1e-12)[:, None]
        scores = ((u_all @ sigma) * u_all).sum(1)
        scores[norms < 1e-9] = -1.0
        if chosen:
            scores[chosen] = -1.0
        j = int(scores.argmax())
        if scores[j] <= 0:
            break
        u = u_all[j]
        chosen.append(j)
        shares.append(float(scores[j]) / total)
        proj = torch.eye(len(u), dtype=u.dtype) - torch.outer(u, u)
        sigma = proj @ sigma @ proj
        t = t @ proj
    return chosen, shares


def concept_consistency(concepts: Sequence[str]) -> tuple[str, int]:
    """CCS of a head from the concepts of its TEXTSPAN texts (in the order they were chosen): the label
    is the majority concept, a tie going to the concept chosen first; CCS is how many texts carry it
    (0..len; the published score uses 5 texts: high = 5, low <= 1)."""
    if not concepts:
        raise ValueError("CCS needs the concepts of at least one text")
    counts: dict[str, int] = {}
    for c in concepts:
        counts[c] = counts.get(c, 0) + 1
    best = max(counts.values())
    label = next(c for c in concepts if counts[c] == best)
    return label, best
